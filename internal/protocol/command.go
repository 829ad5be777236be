package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
)

// Command is a client command in the form it is sent: a name, space-separated parameters on
// one line, and for some commands a size-prefixed body after the line.
type Command struct {
	// Name is the command, such as "PUB".
	Name []byte
	// Params follow the name on the command line, each preceded by one space.
	Params [][]byte
	// Body, when not nil, follows the line as [4-byte size][body]. An empty non-nil body is
	// sent as a zero size.
	Body []byte
}

// AppendTo appends the command in wire form to dst and returns it. It does not allocate when
// dst has room.
func (c *Command) AppendTo(dst []byte) []byte {
	dst = c.appendLine(dst)
	if c.Body != nil {
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(c.Body)))
		dst = append(dst, c.Body...)
	}
	return dst
}

// appendLine appends "NAME p1 p2\n" and nothing else.
func (c *Command) appendLine(dst []byte) []byte {
	dst = append(dst, c.Name...)
	for _, p := range c.Params {
		dst = append(dst, ' ')
		dst = append(dst, p...)
	}
	return append(dst, '\n')
}

// WriteTo writes the command to w: the line "NAME p1 p2\n", then [4-byte size][body] if Body
// is not nil. The line and the size go in one Write and the body in a second, so a large
// body is not copied; wrap w in a bufio.Writer to batch commands.
func (c *Command) WriteTo(w io.Writer) (int64, error) {
	n := len(c.Name) + 1 + 4
	for _, p := range c.Params {
		n += 1 + len(p)
	}
	head := c.appendLine(make([]byte, 0, n))
	if c.Body != nil {
		head = binary.BigEndian.AppendUint32(head, uint32(len(c.Body)))
	}
	written, err := w.Write(head)
	total := int64(written)
	if err != nil {
		return total, fmt.Errorf("write %s command: %w", c.Name, err)
	}
	if len(c.Body) > 0 {
		written, err = w.Write(c.Body)
		total += int64(written)
		if err != nil {
			return total, fmt.Errorf("write %s body: %w", c.Name, err)
		}
	}
	return total, nil
}

// String returns the command line without its newline, for logs. The body is left out.
func (c *Command) String() string {
	line := c.appendLine(nil)
	return string(line[:len(line)-1])
}

func command(name string, body []byte, params ...[]byte) *Command {
	return &Command{Name: []byte(name), Params: params, Body: body}
}

// millis returns d in whole milliseconds as a parameter. A negative delay becomes 0: NSQ
// clamps it anyway, but its parser rejects the minus sign as a fatal error.
func millis(d time.Duration) []byte {
	return strconv.AppendInt(nil, max(int64(d/time.Millisecond), 0), 10)
}

// Identify returns an IDENTIFY command whose body is v in JSON: an [IdentifyRequest], or a
// map[string]any for fields this package does not know.
func Identify(v any) (*Command, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode IDENTIFY body: %w", err)
	}
	return command("IDENTIFY", body), nil
}

// Auth returns an AUTH command carrying secret.
func Auth(secret string) *Command {
	return command("AUTH", []byte(secret))
}

// Subscribe returns a SUB command for topic and channel.
func Subscribe(topic, channel string) *Command {
	return command("SUB", nil, []byte(topic), []byte(channel))
}

// Ready returns an RDY command: the client accepts up to n messages in flight.
func Ready(n int) *Command {
	return command("RDY", nil, strconv.AppendInt(nil, int64(n), 10))
}

// Finish returns a FIN command for the message id.
func Finish(id MessageID) *Command {
	return command("FIN", nil, id[:])
}

// Requeue returns a REQ command: deliver message id again after delay (0 for at once),
// rounded down to milliseconds.
func Requeue(id MessageID, delay time.Duration) *Command {
	return command("REQ", nil, id[:], millis(delay))
}

// Touch returns a TOUCH command, which resets the timeout of message id.
func Touch(id MessageID) *Command {
	return command("TOUCH", nil, id[:])
}

// StartClose returns a CLS command: the server stops delivering and answers CLOSE_WAIT.
func StartClose() *Command {
	return command("CLS", nil)
}

// Nop returns a NOP command, the answer to a heartbeat.
func Nop() *Command {
	return command("NOP", nil)
}

// Publish returns a PUB command publishing body to topic.
func Publish(topic string, body []byte) *Command {
	if body == nil {
		// A nil body would write no size at all and desynchronise the stream; an empty one
		// is sent as size 0, which the server rejects cleanly.
		body = []byte{}
	}
	return command("PUB", body, []byte(topic))
}

// DeferredPublish returns a DPUB command: publish body to topic, deliverable after delay
// (rounded down to milliseconds).
func DeferredPublish(topic string, delay time.Duration, body []byte) *Command {
	if body == nil {
		body = []byte{}
	}
	return command("DPUB", body, []byte(topic), millis(delay))
}

// ErrEmptyMPUB is returned by [MultiPublish] for an empty batch or an empty message, which
// the server would reject with a fatal error.
var ErrEmptyMPUB = errors.New("MPUB needs at least one message, none of them empty")

// MultiPublish returns an MPUB command publishing bodies to topic as one batch.
func MultiPublish(topic string, bodies [][]byte) (*Command, error) {
	if len(bodies) == 0 {
		return nil, ErrEmptyMPUB
	}
	size := 4
	for _, b := range bodies {
		if len(b) == 0 {
			return nil, ErrEmptyMPUB
		}
		size += 4 + len(b)
	}
	body := make([]byte, 0, size)
	body = binary.BigEndian.AppendUint32(body, uint32(len(bodies)))
	for _, b := range bodies {
		body = binary.BigEndian.AppendUint32(body, uint32(len(b)))
		body = append(body, b...)
	}
	return command("MPUB", body, []byte(topic)), nil
}

// Register returns an nsqlookupd REGISTER command for topic, or for topic and channel when
// channel is not empty.
func Register(topic, channel string) *Command {
	return command("REGISTER", nil, topicChannel(topic, channel)...)
}

// UnRegister returns an nsqlookupd UNREGISTER command for topic, or for topic and channel
// when channel is not empty.
func UnRegister(topic, channel string) *Command {
	return command("UNREGISTER", nil, topicChannel(topic, channel)...)
}

func topicChannel(topic, channel string) [][]byte {
	if channel == "" {
		return [][]byte{[]byte(topic)}
	}
	return [][]byte{[]byte(topic), []byte(channel)}
}

// Ping returns an nsqlookupd PING command, which keeps the registration alive.
func Ping() *Command {
	return command("PING", nil)
}
