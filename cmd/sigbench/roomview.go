package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// roomView is what one side of a call knows of its room from the watch:
// which keys hold a value and the candidate ids under each candidates key.
type roomView struct {
	has        map[string]bool
	candidates map[string]map[string]bool
}

// readUntil applies events from the stream until done holds.
func (v *roomView) readUntil(s *stream, done func(*roomView) bool) error {
	for !done(v) {
		ev, err := s.next()
		if err != nil {
			return err
		}
		switch ev.name {
		case "put", "patch":
			if err := v.apply(ev.name == "patch", ev.data); err != nil {
				return err
			}
		case "keep-alive":
		default:
			return fmt.Errorf("%w: %s %s", errStreamEnded, ev.name, ev.data)
		}
	}
	return nil
}

// apply folds one put or patch event into the view.
func (v *roomView) apply(patch bool, data []byte) error {
	var ch struct {
		Path string          `json:"path"`
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(data, &ch); err != nil {
		return fmt.Errorf("event data %q: %w", data, err)
	}
	at := splitPath(ch.Path)
	if !patch {
		return v.set(at, ch.Data)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(ch.Data, &members); err != nil {
		return fmt.Errorf("patch data %q: %w", ch.Data, err)
	}
	for name, val := range members {
		if err := v.set(append(at[:len(at):len(at)], splitPath(name)...), val); err != nil {
			return err
		}
	}
	return nil
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// set records the value now at a path of the room: nil is the room, then
// key, then child.
func (v *roomView) set(at []string, data json.RawMessage) error {
	if v.has == nil {
		v.has, v.candidates = map[string]bool{}, map[string]map[string]bool{}
	}
	null := bytes.Equal(bytes.TrimSpace(data), []byte("null"))
	switch len(at) {
	case 0:
		clear(v.has)
		clear(v.candidates)
		if null {
			return nil
		}
		var keys map[string]json.RawMessage
		if err := json.Unmarshal(data, &keys); err != nil {
			return fmt.Errorf("room value %q: %w", data, err)
		}
		for k, val := range keys {
			if err := v.set([]string{k}, val); err != nil {
				return err
			}
		}
	case 1:
		delete(v.candidates, at[0])
		v.has[at[0]] = !null
		if null || !isCandidatesKey(at[0]) {
			return nil
		}
		var children map[string]json.RawMessage
		if err := json.Unmarshal(data, &children); err != nil {
			return fmt.Errorf("%s value %q: %w", at[0], data, err)
		}
		for id := range children {
			v.addCandidate(at[0], id)
		}
	default:
		switch {
		case !isCandidatesKey(at[0]):
		case null:
			delete(v.candidates[at[0]], at[1])
		default:
			v.addCandidate(at[0], at[1])
		}
	}
	return nil
}

func (v *roomView) addCandidate(key, id string) {
	if v.candidates[key] == nil {
		v.candidates[key] = map[string]bool{}
	}
	v.candidates[key][id] = true
	v.has[key] = true
}

func isCandidatesKey(k string) bool { return k == "callerCandidates" || k == "calleeCandidates" }

// description is a session description as a browser sends it: about 1.3 KB
// of SDP with audio and video.
func description(kind string) []byte {
	var sdp strings.Builder
	sdp.WriteString("v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n" +
		"a=group:BUNDLE 0 1\r\na=msid-semantic: WMS stream\r\n")
	for i, m := range []string{"audio 9 UDP/TLS/RTP/SAVPF 111", "video 9 UDP/TLS/RTP/SAVPF 96 97"} {
		fmt.Fprintf(&sdp, "m=%s\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"+
			"a=ice-ufrag:sigb\r\na=ice-pwd:sigbenchsigbenchsigbench\r\na=ice-options:trickle\r\n"+
			"a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E\r\n"+
			"a=setup:actpass\r\na=mid:%d\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"+
			"a=rtpmap:96 VP8/90000\r\na=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\n", m, i)
	}
	b, _ := json.Marshal(map[string]string{"type": kind, "sdp": sdp.String()})
	return b
}

// candidate is the i-th ICE candidate as a browser sends it.
func candidate(i int) []byte {
	return []byte(`{"candidate":"candidate:` + strconv.Itoa(1000+i) + ` 1 udp 2122260223 127.0.0.1 ` +
		strconv.Itoa(50000+i) + ` typ host generation 0","sdpMid":"0","sdpMLineIndex":0}`)
}
