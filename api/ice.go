package api

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
)

// ICEConfig is what GET /ice-servers hands to RTCPeerConnection: STUN URLs,
// and TURN URLs with credentials minted by the TURN REST scheme (coturn's
// use-auth-secret): username "<expiry unix>:<id>", credential
// base64(HMAC-SHA1(secret, username)).
type ICEConfig struct {
	STUN       []string      // stun: URLs
	TURN       []string      // turn: and turns: URLs
	TURNSecret string        // shared with the TURN server; empty: TURN URLs are left out
	TURNTTL    time.Duration // credential lifetime: 1 h
}

// iceServer is one RTCIceServer.
type iceServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}

func handleICEServers(cfg ICEConfig) echo.HandlerFunc {
	if cfg.TURNTTL <= 0 {
		cfg.TURNTTL = DefaultConfig().ICE.TURNTTL
	}
	return func(c echo.Context) error {
		servers := []iceServer{}
		if len(cfg.STUN) > 0 {
			servers = append(servers, iceServer{URLs: cfg.STUN})
		}
		if len(cfg.TURN) > 0 && cfg.TURNSecret != "" {
			user, cred := turnCredential(cfg.TURNSecret, time.Now().Add(cfg.TURNTTL), randomID())
			servers = append(servers, iceServer{URLs: cfg.TURN, Username: user, Credential: cred})
		}
		body, err := json.Marshal(map[string]any{"iceServers": servers})
		if err != nil {
			return err
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return writeJSON(c, http.StatusOK, body)
	}
}

// turnCredential mints a TURN REST API username and password valid until expiry.
func turnCredential(secret string, expiry time.Time, id string) (username, credential string) {
	username = strconv.FormatInt(expiry.Unix(), 10) + ":" + id
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(username))
	return username, base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// randomID names a credential holder without saying who it is.
func randomID() string {
	var b [9]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
