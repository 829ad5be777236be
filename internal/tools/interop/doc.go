// Package interop holds the interop tests of NSQ's tools built on Tern's client (to_nsq,
// nsq_tail, nsq_stat, nsq_to_file, nsq_to_http, nsq_to_nsq) against NSQ 1.3's own nsqd and
// nsqlookupd. It has no code outside its tests, which need the build tag `interop` and NSQ's
// binaries in $TERN_NSQ_BIN: `make interop-test` builds them (contrib/nsq-reference.sh) and
// runs these tests.
package interop
