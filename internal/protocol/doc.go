// Package protocol holds the parts of NSQ's wire protocols that nsqd, nsqlookupd and the Go
// client all need, so that the three agree byte for byte.
//
// The package has no state and does no I/O of its own beyond the readers and writers it is
// handed; each part is a pure function of its input:
//
//   - Framing (frame.go). A client opens with a 4-byte magic, [MagicV2] for nsqd or [MagicV1]
//     for nsqlookupd. nsqd answers in frames, [4-byte size][4-byte type][data], built with
//     [AppendFrame] and read with [ReadFrame]; nsqlookupd answers with [4-byte size][data]
//     ([AppendV1Response], [ReadV1Response]).
//   - Messages (message.go). A message frame carries a timestamp, an attempt count, a
//     16-character hexadecimal [MessageID] and the body ([AppendMessageFrame],
//     [DecodeMessage]). IDs travel as text because FIN, REQ and TOUCH echo them on command
//     lines; [NewMessageID] and [ParseMessageID] convert them to and from a uint64.
//   - Command lines (line.go). Clients send newline-terminated lines of space-separated
//     parameters. [ReadLine] bounds how much a connection can make the server buffer,
//     [SplitParams] splits without allocating and [ParseInt] reads counts and delays.
//   - Bodies (body.go). Commands that carry data follow the line with [4-byte size][body].
//     [ReadBody] validates the size before allocating anything, and [ParseMPUB] and
//     [ParseMPUBBinary] validate a whole MPUB batch before any of it is accepted.
//   - Names (names.go). Topic and channel names, with the optional "#ephemeral" suffix.
//   - Errors (errors.go). [Error] is a wire error: a code such as "E_INVALID", a description
//     and whether the connection must be closed. Its text is exactly the error frame's data.
//   - IDENTIFY (identify.go). The JSON a client sends to negotiate features and the JSON the
//     server answers with, with NSQ's field names.
//   - Commands (command.go). [Command] and its builders write client commands in wire form;
//     the Go client and the daemons' tests use them.
//
// The parsers are the first code to touch untrusted bytes, so every size read from the wire
// is checked against a caller-supplied bound before it is used to allocate, a negative size is
// an error rather than a panic, and every failure is an [*Error] carrying the code and
// description NSQ would send. The per-command paths (reading and splitting a line, parsing an
// integer or a message ID, appending a frame) do not allocate.
//
// Where NSQ 1.3 is lax this package is stricter, always failing in a way NSQ's clients already
// understand: an MPUB whose declared body size disagrees with its messages is rejected
// (NSQ only uses the size as an upper bound), an nsqlookupd IDENTIFY body is bounded like
// nsqd's, and an over-long command line gets a fatal E_INVALID error frame where NSQ drops
// the connection without a word.
package protocol
