package tofile

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ternmq/tern/internal/tools/toolflag"
	"github.com/ternmq/tern/nsq"
)

// topicWriter writes one topic's messages to its files. Its Consumer's handler hands every
// message to the router (run), which owns the file: it writes the message, and FINs it only
// once the file holding it has been synced to disk. A message whose file was not synced is
// never finished, so nsqd delivers it again: nothing is lost, at the price of a possible
// duplicate after a crash.
type topicWriter struct {
	topic    string
	opts     *Options
	logger   *slog.Logger
	consumer *nsq.Consumer
	format   string // filenameFormat: <DATETIME> and <REV> left

	msgs chan *nsq.Message
	hup  chan struct{} // Rotate: close the file
	dead chan struct{} // closed when run returns: the handler hands nothing more

	// The router's own state.
	out      *os.File
	buf      *bufio.Writer
	gz       *gzip.Writer
	w        io.Writer // gz or buf
	filename string    // the current file's name before <REV>
	openTime time.Time
	size     int64 // bytes written to w, as NSQ counts them (uncompressed with --gzip)
	rev      int
	pending  []*nsq.Message // written, not yet synced and finished
}

func newTopicWriter(o *Options, topic, hostname string, cfg *nsq.Config, logger *slog.Logger) (*topicWriter, error) {
	w := &topicWriter{
		topic:  topic,
		opts:   o,
		logger: logger.With("topic", topic, "channel", o.Channel),
		format: filenameFormat(o, topic, hostname),
		msgs:   make(chan *nsq.Message, 1),
		hup:    make(chan struct{}, 1),
		dead:   make(chan struct{}),
	}
	c, err := nsq.NewConsumer(topic, o.Channel, nsq.HandlerFunc(w.handle), cfg)
	if err != nil {
		return nil, err
	}
	w.consumer = c
	return w, nil
}

// handle passes m to the router, which finishes it once it is on disk.
func (w *topicWriter) handle(m *nsq.Message) error {
	m.DisableAutoResponse()
	select {
	case w.msgs <- m:
	case <-w.dead:
		m.RequeueWithoutBackoff(0)
	}
	return nil
}

// rotate asks the router to close the file; the next message opens a new one.
func (w *topicWriter) rotate() {
	select {
	case w.hup <- struct{}{}:
	default:
	}
}

// run connects the consumer and routes messages to files until ctx ends; then it stops the
// consumer, writing and syncing what it still delivers, and closes the file. It returns
// an error if a file cannot be written, synced, closed or moved: messages not synced are
// then left to nsqd.
func (w *topicWriter) run(ctx context.Context) (err error) {
	defer func() {
		close(w.dead)
		if err != nil {
			w.abandon()
		}
	}()
	if err := w.opts.Source.Connect(ctx, w.consumer); err != nil {
		if ctx.Err() != nil {
			return w.shutdown()
		}
		return err
	}
	ticker := time.NewTicker(w.opts.SyncInterval)
	defer ticker.Stop()
	done := ctx.Done()
	var stopped chan error // receives the consumer's Stop once shutdown has begun
	for {
		sync, closeFile := false, false
		select {
		case <-done:
			done = nil
			stopped = make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), toolflag.DrainTimeout)
				defer cancel()
				stopped <- w.consumer.Stop(ctx)
			}()
		case err := <-stopped:
			if err != nil {
				w.logger.Warn("consumer did not drain", "error", err)
			}
			if err := w.sync(); err != nil {
				return err
			}
			return w.close()
		case <-w.hup:
			sync, closeFile = true, true
		case <-ticker.C:
			if w.needsRotation() {
				if w.opts.SkipEmptyFiles {
					closeFile = true
				} else if err := w.openNext(); err != nil {
					return err
				}
			}
			sync = true
		case m := <-w.msgs:
			// Pending from here: if it cannot be written, abandon requeues it.
			w.pending = append(w.pending, m)
			if w.needsRotation() {
				if err := w.openNext(); err != nil {
					return err
				}
			}
			if err := w.write(m.Body); err != nil {
				return fmt.Errorf("[%s/%s] writing message to disk: %w", w.topic, w.opts.Channel, err)
			}
			// A starved connection (go-nsq's rule: one holding 85% of its RDY) is sent
			// nothing more until its messages are finished: sync now rather than at
			// the next tick.
			sync = len(w.pending) >= w.opts.MaxInFlight || w.consumer.IsStarved()
		}
		// Once stopping, nothing more is coming but what is in flight: sync at once.
		if sync || stopped != nil {
			if err := w.sync(); err != nil {
				return err
			}
		}
		if closeFile {
			if err := w.close(); err != nil {
				return err
			}
		}
	}
}

// shutdown stops the consumer when run ends before the router started.
func (w *topicWriter) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), toolflag.DrainTimeout)
	defer cancel()
	return w.consumer.Stop(ctx)
}

func (w *topicWriter) write(body []byte) error {
	n, err := w.w.Write(body)
	w.size += int64(n)
	if err != nil {
		return err
	}
	n, err = w.w.Write([]byte{'\n'})
	w.size += int64(n)
	return err
}

// sync puts everything written on disk and finishes the pending messages. With --gzip it
// ends the gzip member and starts another, so that the file is a valid gzip stream (of
// concatenated members) up to the last message finished.
func (w *topicWriter) sync() error {
	if len(w.pending) == 0 {
		return nil
	}
	w.logger.Debug("syncing records to disk", "records", len(w.pending))
	if err := w.flush(); err != nil {
		return fmt.Errorf("[%s/%s] failed syncing messages: %w", w.topic, w.opts.Channel, err)
	}
	if w.gz != nil {
		w.gz.Reset(w.buf)
	}
	for _, m := range w.pending {
		m.Finish()
	}
	clear(w.pending)
	w.pending = w.pending[:0]
	return nil
}

// flush ends the gzip member, if any, and writes and fsyncs the file.
func (w *topicWriter) flush() error {
	if w.out == nil {
		return nil
	}
	if w.gz != nil {
		if err := w.gz.Close(); err != nil {
			return err
		}
	}
	if err := w.buf.Flush(); err != nil {
		return err
	}
	return w.out.Sync()
}

// currentFilename is the file's name, before <REV>, at this time.
func (w *topicWriter) currentFilename() string {
	return replaceDatetime(w.format, strftime(w.opts.DatetimeFormat, time.Now()))
}

func (w *topicWriter) needsRotation() bool {
	if w.out == nil {
		return true
	}
	if name := w.currentFilename(); name != w.filename {
		w.logger.Info("new filename, rotating", "filename", name)
		return true
	}
	if w.opts.RotateInterval > 0 {
		if age := time.Since(w.openTime); age > w.opts.RotateInterval {
			w.logger.Info("rotating by interval", "file", w.out.Name(), "age", age)
			return true
		}
	}
	if w.opts.RotateSize > 0 && w.size > w.opts.RotateSize {
		w.logger.Info("rotating by size", "file", w.out.Name(), "size", w.size, "rotate_size", w.opts.RotateSize)
		return true
	}
	return false
}

// openNext closes the file, if one is open, and opens the next: the same name with the
// next <REV>, or the first revision of a new name. A revision that exists already (in the
// work directory, or in the output directory when they differ) is skipped, and so is an
// existing file that is already over --rotate-size.
func (w *topicWriter) openNext() error {
	if err := w.close(); err != nil {
		return err
	}
	name := w.currentFilename()
	if name != w.filename {
		w.rev = 0
	} else {
		w.rev++
	}
	w.filename, w.openTime = name, time.Now()
	workDir := w.opts.workDir()
	flags := os.O_WRONLY | os.O_CREATE | os.O_APPEND
	if w.opts.GZIP || w.opts.RotateInterval > 0 {
		flags = os.O_WRONLY | os.O_CREATE | os.O_EXCL
	}
	for ; ; w.rev++ {
		path := filepath.Join(workDir, withRev(name, w.rev))
		if err := os.MkdirAll(filepath.Dir(path), 0o770); err != nil {
			return fmt.Errorf("[%s/%s] unable to create dir: %w", w.topic, w.opts.Channel, err)
		}
		if workDir != w.opts.OutputDir {
			dst := filepath.Join(w.opts.OutputDir, withRev(name, w.rev))
			if err := os.MkdirAll(filepath.Dir(dst), 0o770); err != nil {
				return fmt.Errorf("[%s/%s] unable to create dir: %w", w.topic, w.opts.Channel, err)
			}
			if _, err := os.Stat(dst); err == nil {
				w.logger.Warn("output file already exists", "file", dst)
				continue
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("[%s/%s] unable to stat output file %s: %w", w.topic, w.opts.Channel, dst, err)
			}
		}
		f, err := os.OpenFile(path, flags, 0o666)
		if errors.Is(err, fs.ErrExist) {
			w.logger.Warn("working file already exists", "file", path)
			continue
		}
		if err != nil {
			return fmt.Errorf("[%s/%s] unable to open %s: %w", w.topic, w.opts.Channel, path, err)
		}
		fi, err := f.Stat()
		if err != nil {
			_ = f.Close()
			return fmt.Errorf("[%s/%s] unable to stat file %s: %w", w.topic, w.opts.Channel, path, err)
		}
		if w.opts.RotateSize > 0 && fi.Size() > w.opts.RotateSize {
			_ = f.Close()
			w.logger.Info("existing file over the rotate size, skipping", "file", path, "size", fi.Size())
			continue
		}
		w.logger.Info("opening", "file", path)
		w.out, w.size = f, fi.Size()
		break
	}
	w.buf = bufio.NewWriterSize(w.out, 64*1024)
	w.w = w.buf
	if w.opts.GZIP {
		w.gz, _ = gzip.NewWriterLevel(w.buf, w.opts.GZIPLevel) // the level is validated
		w.w = w.gz
	}
	return nil
}

// close syncs and closes the file, if one is open, and moves it from the work directory to
// the output directory when they differ, never over an existing file: a name taken there
// gets the next free <REV>.
func (w *topicWriter) close() error {
	if w.out == nil {
		return nil
	}
	err := w.flush()
	if cerr := w.out.Close(); err == nil {
		err = cerr
	}
	src := w.out.Name()
	w.out, w.gz, w.buf, w.w = nil, nil, nil, nil
	if err != nil {
		return fmt.Errorf("[%s/%s] failed to close output file %s: %w", w.topic, w.opts.Channel, src, err)
	}
	workDir := w.opts.workDir()
	if workDir == w.opts.OutputDir {
		return nil
	}
	rel, err := filepath.Rel(workDir, src)
	if err != nil {
		return fmt.Errorf("[%s/%s] %w", w.topic, w.opts.Channel, err)
	}
	dst := filepath.Join(w.opts.OutputDir, rel)
	w.logger.Info("moving finished file", "from", src, "to", dst)
	for rev := w.rev + 1; ; rev++ {
		err := exclusiveRename(src, dst)
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("[%s/%s] unable to move file from %s to %s: %w", w.topic, w.opts.Channel, src, dst, err)
		}
		w.logger.Warn("destination file already exists", "file", dst)
		dst = filepath.Join(w.opts.OutputDir, withRev(w.filename, rev))
	}
}

// abandon gives up after a failure: the file is closed as it is, and the messages not
// synced go back to nsqd, which delivers them again; then the consumer is stopped.
func (w *topicWriter) abandon() {
	if w.out != nil {
		_ = w.out.Close()
		w.out = nil
	}
	for _, m := range w.pending {
		m.RequeueWithoutBackoff(0)
	}
	w.pending = nil
	ctx, cancel := context.WithTimeout(context.Background(), toolflag.DrainTimeout)
	defer cancel()
	stopped := make(chan struct{})
	go func() {
		_ = w.consumer.Stop(ctx)
		close(stopped)
	}()
	// A handler may have handed over a message just before dead was closed.
	for {
		select {
		case m := <-w.msgs:
			m.RequeueWithoutBackoff(0)
		case <-stopped:
			return
		}
	}
}

// exclusiveRename moves src to dst unless dst exists: a hard link fails on an existing
// name, where a rename would replace it.
func exclusiveRename(src, dst string) error {
	if err := os.Link(src, dst); err != nil {
		return err
	}
	return os.Remove(src)
}

// replaceDatetime replaces <DATETIME> in format.
func replaceDatetime(format, datetime string) string {
	return strings.ReplaceAll(format, "<DATETIME>", datetime)
}
