// Package toolflag holds what NSQ's command-line tools (to_nsq, nsq_tail, nsq_stat,
// nsq_to_file, nsq_to_http, nsq_to_nsq) share, so that each tool's package keeps only its
// own work:
//
//   - Strings, the value of a flag that may be given multiple times (--topic,
//     --nsqd-tcp-address, --consumer-opt, ...);
//   - ApplyOptions, which maps go-nsq's "key,value" options of --consumer-opt and
//     --producer-opt onto Tern's nsq.Config, refusing what Tern's client cannot honour,
//     and for a producer what only a consumer uses, rather than ignoring it;
//   - Source, the nsqds or lookupds a tool consumes from, with NSQ's rule that exactly one
//     kind is given;
//   - StopConsumers, which stops a tool's consumers all at once, each draining within
//     the same deadline;
//   - Command and its Main, which every tool's main package calls: flag parsing, --help,
//     --version, validation with every problem reported at once, the logger, and
//     SIGINT/SIGTERM as a graceful stop (a second signal kills).
package toolflag
