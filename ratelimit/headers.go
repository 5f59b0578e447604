package ratelimit

import (
	"strconv"
	"time"
)

// Policy returns the RateLimit-Policy field value for this limiter, in the
// syntax of draft-ietf-httpapi-ratelimit-headers-10 section 3 (unchanged
// since -08): a Structured Fields List (RFC 9651) with one item, the policy
// name "default", whose q parameter is the quota (max_requests) and w the
// window in seconds, e.g. `"default";q=10;w=60`.
func (l *Limiter) Policy() string { return l.policy }

// AppendHeaders appends the rate-limit response fields for d to dst as raw
// "Name: value\r\n" lines and returns the extended slice. It allocates only
// if dst lacks capacity (about 100 bytes suffice). The fields are, per
// draft-ietf-httpapi-ratelimit-headers-10 sections 3 and 4:
//
//	RateLimit-Policy: "default";q=<max_requests>;w=<window_seconds>
//	RateLimit: "default";r=<remaining>;t=<reset>
//
// where r is d.Remaining and t is d.Reset in whole seconds, rounded up. When
// d is a denial it also appends "Retry-After: <seconds>" (RFC 9110 section
// 10.2.3, delay-seconds: d.RetryAfter rounded up, at least 1). A disabled
// limiter appends nothing.
func (l *Limiter) AppendHeaders(dst []byte, d Decision) []byte {
	if !l.enabled {
		return dst
	}
	dst = append(dst, l.policyLine...)
	dst = append(dst, `RateLimit: "default";r=`...)
	dst = strconv.AppendUint(dst, uint64(max(d.Remaining, 0)), 10)
	dst = append(dst, ";t="...)
	dst = strconv.AppendUint(dst, ceilSeconds(d.Reset), 10)
	dst = append(dst, "\r\n"...)
	if !d.Allowed {
		dst = append(dst, "Retry-After: "...)
		dst = strconv.AppendUint(dst, max(ceilSeconds(d.RetryAfter), 1), 10)
		dst = append(dst, "\r\n"...)
	}
	return dst
}

func ceilSeconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64((d + time.Second - 1) / time.Second)
}
