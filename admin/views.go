package admin

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/ternmq/tern/internal/httpapi"
)

// The page handlers: each turns a snapshot (or, for a channel and a node, a fetch with
// clients) and the sampler's history into a page body.

// overviewBody is the overview page: the cluster in numbers and charts, and every topic.
type overviewBody struct {
	Summary               summary
	DepthChart, RateChart chart
	Topics                []topicRow
	Inactive              int // topics the lookupds know with no node
}

type summary struct {
	Nodes, Topics, Channels, Clients int
	Depth                            int64
	In, Processed                    float64
	HasRates                         bool
}

type topicRow struct {
	Name                             string
	Depth, MemoryDepth, BackendDepth int64
	Messages                         int64
	Channels, Clients, Nodes         int
	Paused                           bool
	In, Processed                    float64
	HasRates                         bool
	Spark                            string // SVG path of the last hour's inbound rate
}

func (p *pages) overview(r *http.Request, _ httprouter.Params, d *pageData) (string, error) {
	s, err := p.pageSnapshot(r, d)
	if err != nil {
		return "", err
	}
	d.Title, d.Section = "Topics", "topics"
	sm := p.a.sampler
	b := overviewBody{Summary: summary{Nodes: len(s.producers), Topics: len(s.topics)}}
	now := time.Now()
	for _, t := range s.topics {
		row := topicRow{
			Name: t.TopicName, Depth: t.TotalDepth(), MemoryDepth: t.TotalMemoryDepth(), BackendDepth: t.TotalBackendDepth(),
			Messages: t.MessageCount, Channels: len(t.Channels), Clients: t.ClientCount(), Nodes: len(t.NodeStats),
			Paused: t.Paused,
		}
		k := seriesKey{topic: t.TopicName}
		if rt, ok := sm.lastRates(k); ok {
			row.In, row.Processed, row.HasRates = rt.pub, rt.fin, true
		}
		row.Spark = sparkline(sm.points(k), now, sm.interval)
		b.Topics = append(b.Topics, row)
		b.Summary.Channels += len(t.Channels)
		b.Summary.Clients += row.Clients
		b.Summary.Depth += row.Depth
	}
	if rt, ok := sm.lastRates(seriesKey{}); ok {
		b.Summary.In, b.Summary.Processed, b.Summary.HasRates = rt.pub, rt.fin, true
	}
	for _, name := range s.lookupdTopics {
		if s.topic(name) == nil {
			b.Inactive++
		}
	}
	pts := sm.points(seriesKey{})
	b.DepthChart = makeChart("Depth, whole cluster", pts, now, sm.interval, depthLine)
	b.RateChart = makeChart("Messages per second, whole cluster", pts, now, sm.interval, pubLine, finLine)
	d.Body = b
	return "overview", nil
}

// sparkline draws the inbound rate of the last hour in a 120×24 box.
func sparkline(pts []point, now time.Time, interval time.Duration) string {
	f := newFrame(pts, now, interval, 0, 120, 1, 23, pubLine)
	if f.empty {
		return ""
	}
	path, _ := f.path(pts, pubLine)
	return path
}

// topicBody is the topic page.
type topicBody struct {
	Name                  string
	Topic                 *TopicStats // nil when no node has the topic
	In, Processed         float64
	HasRates              bool
	DepthChart, RateChart chart
	Channels              []channelRow
	Nodes                 []topicNodeRow
	KnownToLookupd        bool
	LookupdChannels       []string
	SettingsForm          topicSettingsForm
}

type channelRow struct {
	*ChannelStats
	In, Processed float64
	HasRates      bool
}

type topicNodeRow struct {
	*TopicStats
	In       float64
	HasRates bool
}

func (p *pages) topic(r *http.Request, ps httprouter.Params, d *pageData) (string, error) {
	s, err := p.pageSnapshot(r, d)
	if err != nil {
		return "", err
	}
	name := ps.ByName("topic")
	d.Title, d.Section = name, "topics"
	d.Crumbs = []crumb{{"Topics", p.base("/")}, {name, ""}}
	sm := p.a.sampler
	b := topicBody{Name: name, Topic: s.topic(name)}
	if b.Topic == nil {
		known := false
		for _, t := range s.lookupdTopics {
			known = known || t == name
		}
		if !known {
			return "", httpapi.NewError(http.StatusNotFound, codeTopicNotFound)
		}
		b.KnownToLookupd = true
		chans, errs := p.a.cluster.lookupdChannels(r.Context(), name)
		b.LookupdChannels = chans
		for _, e := range errs {
			d.Warnings = append(d.Warnings, e.Error())
		}
		d.Body = b
		return "topic", nil
	}
	k := seriesKey{topic: name}
	if rt, ok := sm.lastRates(k); ok {
		b.In, b.Processed, b.HasRates = rt.pub, rt.fin, true
	}
	now := time.Now()
	pts := sm.points(k)
	b.DepthChart = makeChart("Depth of "+name+" and its channels", pts, now, sm.interval, depthLine)
	b.RateChart = makeChart("Messages per second", pts, now, sm.interval, pubLine, finLine)
	for _, c := range b.Topic.Channels {
		row := channelRow{ChannelStats: c}
		if rt, ok := sm.lastRates(seriesKey{name, c.ChannelName}); ok {
			row.In, row.Processed, row.HasRates = rt.pub, rt.fin, true
		}
		b.Channels = append(b.Channels, row)
	}
	for _, nt := range b.Topic.NodeStats {
		row := topicNodeRow{TopicStats: nt}
		if rt, ok := sm.nodeRates(nodeKey{nt.Node, name, ""}); ok {
			row.In, row.HasRates = rt.pub, true
		}
		b.Nodes = append(b.Nodes, row)
	}
	b.SettingsForm = newTopicSettingsForm(b.Topic.NodeStats)
	d.Body = b
	return "topic", nil
}

// channelBody is the channel page.
type channelBody struct {
	Topic                 string
	Channel               *ChannelStats
	In, Processed         float64
	HasRates              bool
	DepthChart, RateChart chart
	Nodes                 []channelRow

	// The messages section, for admin users: the state shown and each node's messages.
	ShowMessages  bool
	MessagesState string
	PeekStates    []string
	Messages      []messageRow
	// NoPeek are the nodes that cannot show their messages (NSQ's nsqd): said in the
	// section, not as a warning, since nothing is wrong with them.
	NoPeek []string

	SettingsForm channelSettingsForm
	// The dead letters section, for admin users, likewise.
	DeadLetters      []deadLetterRow
	DeadLettersShown int      // at most, of each node
	DeadLetterTopics []string // where the nodes send the channel's dead letters
	NoDeadLetters    []string
}

func (p *pages) channel(r *http.Request, ps httprouter.Params, d *pageData) (string, error) {
	topic, channel := ps.ByName("topic"), ps.ByName("channel")
	d.Title, d.Section = channel+" · "+topic, "topics"
	d.Crumbs = []crumb{{"Topics", p.base("/")}, {topic, p.topicURL(topic)}, {channel, ""}}
	if _, err := p.pageSnapshot(r, d); err != nil {
		return "", err
	}
	c, warnings, err := p.a.channelWithClients(r.Context(), topic, channel)
	if err != nil {
		return "", err
	}
	d.Warnings = d.Warnings[:0]
	for _, w := range warnings {
		d.Warnings = append(d.Warnings, w.Error())
	}
	sm := p.a.sampler
	k := seriesKey{topic, channel}
	b := channelBody{Topic: topic, Channel: c}
	if rt, ok := sm.lastRates(k); ok {
		b.In, b.Processed, b.HasRates = rt.pub, rt.fin, true
	}
	now := time.Now()
	pts := sm.points(k)
	b.DepthChart = makeChart("Depth of "+channel, pts, now, sm.interval, depthLine)
	b.RateChart = makeChart("Messages per second", pts, now, sm.interval, pubLine, finLine)
	for _, nc := range c.NodeStats {
		row := channelRow{ChannelStats: nc}
		if rt, ok := sm.nodeRates(nodeKey{nc.Node, topic, channel}); ok {
			row.In, row.Processed, row.HasRates = rt.pub, rt.fin, true
		}
		b.Nodes = append(b.Nodes, row)
	}
	if d.Admin {
		b.ShowMessages, b.PeekStates, b.MessagesState = true, peekStates, "next"
		if s := r.URL.Query().Get("messages"); slices.Contains(peekStates, s) {
			b.MessagesState = s
		}
		nodes := channelNodes(c)
		found, errs := p.a.cluster.peek(r.Context(), nodes, topic, channel, b.MessagesState, peekPerNode)
		for _, nm := range found {
			for _, m := range nm.Messages {
				b.Messages = append(b.Messages, newMessageRow(nm.Node, m, now))
			}
		}
		for _, e := range errs {
			var de *daemonError
			if errors.Is(e, errNoPeek) && errors.As(e, &de) {
				b.NoPeek = append(b.NoPeek, de.addr)
				continue
			}
			d.Warnings = append(d.Warnings, e.Error())
		}
		dead, errs := p.a.cluster.deadLetters(r.Context(), nodes, topic, channel, deadLettersPerNode)
		b.DeadLetters, b.DeadLettersShown = deadLetterRows(dead, now), deadLettersPerNode
		for _, nd := range dead {
			if !slices.Contains(b.DeadLetterTopics, nd.DeadLetterTopic) {
				b.DeadLetterTopics = append(b.DeadLetterTopics, nd.DeadLetterTopic)
			}
		}
		var others []error
		b.NoDeadLetters, others = extensionNodes(errs)
		for _, e := range others {
			d.Warnings = append(d.Warnings, e.Error())
		}
	}
	b.SettingsForm = newChannelSettingsForm(c.NodeStats)
	d.Body = b
	return "channel", nil
}

// nodesBody is the nodes page.
type nodesBody struct {
	Nodes    []nodeRow
	Lookupds []string
}

type nodeRow struct {
	*Producer
	Tombstoned int
	Failed     string // why the node's /stats failed, if it did
	Depth      int64
	Messages   int64
	Clients    int
}

func (p *pages) nodes(r *http.Request, _ httprouter.Params, d *pageData) (string, error) {
	s, err := p.pageSnapshot(r, d)
	if err != nil {
		return "", err
	}
	d.Title, d.Section = "Nodes", "nodes"
	b := nodesBody{Lookupds: p.a.getOpts().NSQLookupdHTTPAddresses}
	for i, pr := range s.producers {
		row := nodeRow{Producer: pr}
		for _, t := range pr.Topics {
			if t.Tombstoned {
				row.Tombstoned++
			}
		}
		if err := s.nodeErrs[pr.HTTPAddress()]; err != nil {
			row.Failed = err.Error()
		}
		if ns := s.stats[i]; ns != nil {
			for _, t := range ns.Topics {
				row.Depth += t.TotalDepth()
				row.Messages += t.MessageCount
				row.Clients += t.ClientCount()
			}
		}
		b.Nodes = append(b.Nodes, row)
	}
	d.Body = b
	return "nodes", nil
}

// nodeBody is the node page.
type nodeBody struct {
	Producer   *Producer
	Detail     *nodeDetail
	Lookupds   []string
	MetricsURL string
}

func (p *pages) node(r *http.Request, ps httprouter.Params, d *pageData) (string, error) {
	node := ps.ByName("node")
	d.Title, d.Section = node, "nodes"
	d.Crumbs = []crumb{{"Nodes", p.base("/nodes")}, {node, ""}}
	if _, err := p.pageSnapshot(r, d); err != nil {
		return "", err
	}
	producer, detail, err := p.a.nodeWithClients(r.Context(), node)
	if err != nil {
		return "", err
	}
	d.Warnings = nil // this page is about one node, which answered
	b := nodeBody{Producer: producer, Detail: detail, Lookupds: p.a.getOpts().NSQLookupdHTTPAddresses}
	if producer.Hostname != "" {
		d.Crumbs[1].Label = producer.Hostname
	}
	if p.servesMetrics(r.Context(), node) {
		b.MetricsURL = "http://" + node + "/metrics"
	}
	d.Body = b
	return "node", nil
}

// servesMetrics reports whether the node answers GET /metrics (Tern's nsqd does, NSQ's does
// not), asking at most every few minutes.
func (p *pages) servesMetrics(ctx context.Context, node string) bool {
	p.probeMu.Lock()
	probe, ok := p.probes[node]
	p.probeMu.Unlock()
	if ok && time.Since(probe.at) < metricsProbeTTL {
		return probe.ok
	}
	ok = p.a.client.do(ctx, http.MethodGet, node, "/metrics", nil, nil) == nil
	if ctx.Err() != nil {
		return ok // the request was given up on: that says nothing about the node
	}
	now := time.Now()
	p.probeMu.Lock()
	for n, old := range p.probes { // nodes that left are not probed again: forget them
		if now.Sub(old.at) >= metricsProbeTTL {
			delete(p.probes, n)
		}
	}
	p.probes[node] = metricsProbe{at: now, ok: ok}
	p.probeMu.Unlock()
	return ok
}

// lookupBody is the lookup page.
type lookupBody struct {
	Lookupds []string
	Inactive []inactiveTopic
}

type inactiveTopic struct {
	Name     string
	Channels []string
}

func (p *pages) lookup(r *http.Request, _ httprouter.Params, d *pageData) (string, error) {
	s, err := p.pageSnapshot(r, d)
	if err != nil {
		return "", err
	}
	d.Title, d.Section = "Lookup", "lookup"
	b := lookupBody{Lookupds: p.a.getOpts().NSQLookupdHTTPAddresses}
	inactive, warnings := p.a.inactiveTopics(r.Context(), s)
	for _, w := range warnings {
		if !containsDaemon(s.errs, w) {
			d.Warnings = append(d.Warnings, w.Error())
		}
	}
	for _, name := range s.lookupdTopics {
		if chans, ok := inactive[name]; ok {
			b.Inactive = append(b.Inactive, inactiveTopic{Name: name, Channels: chans})
		}
	}
	d.Body = b
	return "lookup", nil
}

// counterBody is the counter page.
type counterBody struct {
	Processed int64
	Rate      float64
	HasRate   bool
	Chart     chart
}

func (p *pages) counter(r *http.Request, _ httprouter.Params, d *pageData) (string, error) {
	s, err := p.pageSnapshot(r, d)
	if err != nil {
		return "", err
	}
	d.Title, d.Section = "Counter", "counter"
	var b counterBody
	for _, t := range s.topics {
		for _, c := range t.Channels {
			b.Processed += c.Processed()
		}
	}
	sm := p.a.sampler
	if rt, ok := sm.lastRates(seriesKey{}); ok {
		b.Rate, b.HasRate = rt.fin, true
	}
	b.Chart = makeChart("Messages processed per second, whole cluster", sm.points(seriesKey{}), time.Now(), sm.interval, finLine)
	d.Body = b
	return "counter", nil
}

// maxFormBody bounds an action form.
const maxFormBody = 64 << 10

// postAction carries out an action posted by a page's form, after a confirmation: the
// script asks in the browser, and without it the server answers a confirmation page first.
// Success redirects (303) to the page to see next; warnings and failures are a page of their
// own.
func (p *pages) postAction(w http.ResponseWriter, r *http.Request) {
	ps := httprouter.ParamsFromContext(r.Context())
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBody)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, r, httpapi.NewError(http.StatusBadRequest, "The form could not be read."))
		return
	}
	act := action{
		kind:    r.PostForm.Get("action"),
		topic:   ps.ByName("topic"),
		channel: ps.ByName("channel"),
		node:    ps.ByName("node"),
	}
	if act.topic == "" {
		act.topic = r.PostForm.Get("topic")
		act.channel = r.PostForm.Get("channel")
	}
	back := p.returnURL(act)
	invalid := httpapi.NewError(http.StatusBadRequest, codeInvalidAction)
	onNode := act.node != ""
	switch {
	case act.kind == actCreate && ps.ByName("topic") == "" && !onNode:
	case act.kind == actTombstone && onNode:
	case (act.kind == actPause || act.kind == actUnpause || act.kind == actEmpty || act.kind == actDelete) && !onNode:
	case act.kind == actSettings && ps.ByName("topic") != "" && !onNode:
		settings, err := settingsFromForm(r.PostForm, act.channel != "")
		if err != nil {
			p.renderError(w, r, httpapi.NewError(http.StatusBadRequest, codeInvalidSettings+": "+err.Error()))
			return
		}
		act.settings = settings
	case act.kind == actRedrive && act.channel != "" && !onNode:
		act.node, act.ids = r.PostForm.Get("node"), r.PostForm["id"]
		if len(act.ids) > 0 && act.node == "" || slices.ContainsFunc(act.ids, func(id string) bool { return !isMessageID(id) }) {
			p.renderError(w, r, invalid)
			return
		}
	case act.kind == actSeek && act.channel != "" && !onNode:
		q, err := seekQuery(r.PostForm.Get("to"), r.PostForm.Get("at"), time.Now())
		if err != nil {
			p.renderError(w, r, httpapi.NewError(http.StatusBadRequest, "INVALID_SEEK: "+err.Error()))
			return
		}
		act.seek = q
	default:
		p.renderError(w, r, invalid)
		return
	}
	if r.PostForm.Get("confirmed") != "1" {
		p.confirm(w, r, act, back)
		return
	}
	done, err := p.a.act(r, act)
	if err != nil {
		p.renderError(w, r, err)
		return
	}
	warnings := done.warnings
	next := p.nextURL(act)
	if len(warnings) > 0 {
		d := p.newPageData(r, "Done, with warnings", "")
		body := messageBody{Class: "warning", Heading: "Done, but not everywhere",
			Text: "Some daemons did not carry out the action:", Back: next, BackLabel: "Continue"}
		for _, w := range warnings {
			body.Details = append(body.Details, w.Error())
		}
		d.Body = body
		p.render(w, http.StatusOK, "message", d)
		return
	}
	sep := "?"
	if strings.Contains(next, "?") {
		sep = "&"
	}
	http.Redirect(w, r, next+sep+"done="+act.notification(), http.StatusSeeOther)
}

// returnURL is the page an action was taken from.
func (p *pages) returnURL(act action) string {
	switch {
	case act.kind == actTombstone:
		return p.topicURL(act.topic)
	case act.channel != "":
		return p.channelURL(act.topic, act.channel)
	case act.topic != "" && act.kind != actCreate:
		return p.topicURL(act.topic)
	}
	return p.base("/")
}

// nextURL is the page to see after an action: the object acted on, or its parent once
// deleted.
func (p *pages) nextURL(act action) string {
	switch {
	case act.kind == actDelete && act.channel != "":
		return p.topicURL(act.topic)
	case act.kind == actDelete:
		return p.base("/")
	case act.kind == actTombstone:
		return p.topicURL(act.topic)
	case act.channel != "":
		return p.channelURL(act.topic, act.channel)
	}
	return p.topicURL(act.topic)
}

// confirmBody is confirm.html.
type confirmBody struct {
	Question string
	Detail   string
	Action   actionButton
	Fields   []formField // the form's other fields, posted again
	Back     string
}

type formField struct{ Name, Value string }

// confirm answers the question the script would have asked.
func (p *pages) confirm(w http.ResponseWriter, r *http.Request, act action, back string) {
	object := "topic " + act.topic
	if act.channel != "" {
		object = "channel " + act.channel + " of topic " + act.topic
	}
	verb := act.kind
	question := strings.ToUpper(verb[:1]) + verb[1:] + " " + object + "?"
	if act.kind == actTombstone {
		question = "Tombstone topic " + act.topic + " on " + act.node + "?"
	}
	var detail string
	switch act.kind {
	case actSettings:
		question = "Change the settings of " + object + " on every node?"
	case actRedrive:
		question, verb = "Send every dead letter of "+object+" back to the channel?", "redrive"
		if len(act.ids) > 0 {
			question = "Send the chosen dead letters of " + object + " back to the channel?"
		}
	case actSeek:
		question, verb = "Move "+object+" to "+seekText(act.seek)+"?", "move"
		detail = "Every node drops what the channel holds now (in flight, requeued and deferred messages), " +
			"and the channel receives again from there."
		if act.seek.Get("id") != "" {
			detail = "The node that has the message drops what the channel holds there now (in flight, requeued " +
				"and deferred messages), and the channel receives again from the message."
		}
	}
	b := actionButton{Kind: act.kind, Label: verb, Topic: act.topic, Channel: act.channel, Node: act.node, URL: r.URL.EscapedPath()}
	if act.kind == actDelete || act.kind == actEmpty || act.kind == actTombstone || act.kind == actSeek {
		b.Class = "danger"
	}
	var fields []formField
	for _, name := range slices.Sorted(maps.Keys(r.PostForm)) {
		if name == "action" || name == "confirmed" {
			continue
		}
		for _, v := range r.PostForm[name] {
			fields = append(fields, formField{name, v})
		}
	}
	d := p.newPageData(r, "Confirm", "")
	d.Body = confirmBody{Question: question, Detail: detail, Action: b, Fields: fields, Back: back}
	p.render(w, http.StatusOK, "confirm", d)
}
