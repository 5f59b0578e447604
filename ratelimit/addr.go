package ratelimit

import "net/netip"

// parseAddr parses an IPv4 or IPv6 address in text form without
// allocating. It accepts exactly what netip.ParseAddr accepts except IPv6
// zones ("fe80::1%eth0"), which are rejected: a zone never identifies a
// remote client.
func parseAddr(b []byte) (netip.Addr, bool) {
	for _, c := range b {
		switch c {
		case '.':
			v4, ok := parseIPv4(b)
			if !ok {
				return netip.Addr{}, false
			}
			return netip.AddrFrom4(v4), true
		case ':':
			return parseIPv6(b)
		}
	}
	return netip.Addr{}, false
}

// parseHostAddr parses one X-Forwarded-For / X-Real-IP element: an address,
// optionally with a port as some proxies write it ("192.0.2.1:5678",
// "[2001:db8::1]", "[2001:db8::1]:443").
func parseHostAddr(b []byte) (netip.Addr, bool) {
	if len(b) == 0 {
		return netip.Addr{}, false
	}
	if b[0] == '[' {
		for j := 1; j < len(b); j++ {
			if b[j] != ']' {
				continue
			}
			a, ok := parseIPv6(b[1:j])
			if !ok {
				return netip.Addr{}, false
			}
			rest := b[j+1:]
			if len(rest) > 0 && (rest[0] != ':' || !isPort(rest[1:])) {
				return netip.Addr{}, false
			}
			return a, true
		}
		return netip.Addr{}, false
	}
	colons, last := 0, -1
	for i, c := range b {
		if c == ':' {
			colons++
			last = i
		}
	}
	if colons == 1 { // IPv4 with a port; a bare IPv6 address has at least two colons.
		if !isPort(b[last+1:]) {
			return netip.Addr{}, false
		}
		v4, ok := parseIPv4(b[:last])
		if !ok {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(v4), true
	}
	return parseAddr(b)
}

func isPort(b []byte) bool {
	if len(b) == 0 || len(b) > 5 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// parseIPv4 parses dotted-decimal IPv4: four decimal fields 0-255 without
// leading zeros (which some parsers read as octal).
func parseIPv4(b []byte) (ip [4]byte, ok bool) {
	val, pos, digits := 0, 0, 0
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			if digits == 1 && val == 0 {
				return ip, false // leading zero
			}
			val = val*10 + int(c-'0')
			digits++
			if val > 255 {
				return ip, false
			}
		case c == '.':
			if digits == 0 || pos == 3 {
				return ip, false
			}
			ip[pos] = byte(val)
			pos++
			val, digits = 0, 0
		default:
			return ip, false
		}
	}
	if pos != 3 || digits == 0 {
		return ip, false
	}
	ip[3] = byte(val)
	return ip, true
}

// parseIPv6 parses RFC 4291 section 2.2 text: up to eight groups of one to
// four hex digits, at most one "::", optionally ending in dotted IPv4.
func parseIPv6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // index in ip where "::" was seen
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, uint32(0)
		for ; off < len(s); off++ {
			c := s[off]
			var v uint32
			switch {
			case '0' <= c && c <= '9':
				v = uint32(c - '0')
			case 'a' <= c && c <= 'f':
				v = uint32(c-'a') + 10
			case 'A' <= c && c <= 'F':
				v = uint32(c-'A') + 10
			default:
				goto end
			}
			if off == 4 {
				return netip.Addr{}, false // more than four hex digits
			}
			acc = acc<<4 | v
		}
	end:
		if off < len(s) && s[off] == '.' { // embedded IPv4 must fill the last 32 bits
			if ellipsis < 0 && i != 12 || i+4 > 16 {
				return netip.Addr{}, false
			}
			v4, ok := parseIPv4(s)
			if !ok {
				return netip.Addr{}, false
			}
			copy(ip[i:], v4[:])
			i += 4
			s = nil
			break
		}
		if off == 0 {
			return netip.Addr{}, false
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' {
			return netip.Addr{}, false
		}
		s = s[1:]
		if len(s) == 0 {
			return netip.Addr{}, false // trailing single colon
		}
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false // second "::"
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}
