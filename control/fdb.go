package control

import (
	"encoding/json"
	"strconv"

	"github.com/uswitch-dev/uswitch/packet"
)

// appendJSON appends e as json.MarshalIndent(e, "  ", "  ") writes it,
// without reflection: a listing of a million entries spends its time here.
func (e *FDBEntry) appendJSON(b []byte) []byte {
	b = append(b, "{\n    \"network\": "...)
	b = appendJSONString(b, e.Network)
	b = append(b, ",\n    \"mac\": \""...)
	b = appendMAC(b, e.MAC)
	b = append(b, "\",\n    \"vlan\": "...)
	b = strconv.AppendUint(b, uint64(e.VLAN), 10)
	b = append(b, ",\n    \"port\": "...)
	b = appendJSONString(b, e.Port)
	b = append(b, ",\n    \"static\": "...)
	b = strconv.AppendBool(b, e.Static)
	b = append(b, ",\n    \"age\": "...)
	b = appendJSONString(b, e.Age.String())
	return append(b, "\n  }"...)
}

// appendJSONString appends s quoted as encoding/json quotes it: plain
// ASCII as is, anything else (escapes, HTML characters, UTF-8) by json.
func appendJSONString(b []byte, s string) []byte {
	for i := range len(s) {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendMAC appends m as MAC.String writes it: 02:42:ac:1f:01:03.
func appendMAC(b []byte, m packet.MAC) []byte {
	const hex = "0123456789abcdef"
	for i, x := range m {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, hex[x>>4], hex[x&15])
	}
	return b
}
