package api

import (
	"math"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"golang.org/x/time/rate"
)

// RateLimit bounds requests per client IP (as the IP extractor sees it)
// with a token bucket. Health checks are exempt, and so are loopback
// clients unless Loopback is set: a test suite run against a local server
// is not an attack, and behind a local proxy --trusted-proxies makes the
// real client the one limited.
type RateLimit struct {
	Rate     float64 // requests per second; 0: no limit
	Burst    int     // bucket size: 2×Rate when 0
	Loopback bool    // limit clients on 127.0.0.0/8 and ::1 too
}

func rateLimiter(rl RateLimit) echo.MiddlewareFunc {
	burst := rl.Burst
	if burst <= 0 {
		burst = int(math.Ceil(2 * rl.Rate))
	}
	retry := int(math.Max(1, math.Ceil(1/rl.Rate)))
	return middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Skipper: func(c echo.Context) bool {
			p := c.Path()
			return p == "/healthz" || p == "/readyz" || !rl.Loopback && isLoopback(c.RealIP())
		},
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{
			Rate: rate.Limit(rl.Rate), Burst: burst, ExpiresIn: 3 * time.Minute,
		}),
		IdentifierExtractor: func(c echo.Context) (string, error) { return clientKey(c.RealIP()), nil },
		DenyHandler: func(echo.Context, string, error) error {
			return &apiError{status: http.StatusTooManyRequests, msg: "rate limit: too many requests from your address", retryAfter: retry}
		},
	})
}

func isLoopback(ip string) bool {
	addr, err := netip.ParseAddr(ip)
	return err == nil && addr.Unmap().IsLoopback()
}

// clientKey names a client for per-client limits: its IPv4 address, or its
// IPv6 /64, since one IPv6 host usually holds a whole /64.
func clientKey(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Is4() || addr.Is4In6() {
		return ip
	}
	p, _ := addr.Prefix(64)
	return p.String()
}
