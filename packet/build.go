package packet

import "encoding/binary"

// ARPFrameLen is the length of an Ethernet ARP frame without padding.
const ARPFrameLen = EthernetHeaderLen + ARPLen

// PutARP writes an Ethernet/IPv4 ARP frame into b (at least ARPFrameLen
// bytes) and returns the frame.
func PutARP(b []byte, op uint16, ethDst, senderMAC MAC, senderIP [4]byte, targetMAC MAC, targetIP [4]byte) []byte {
	f := b[:ARPFrameLen]
	e := Ethernet(f)
	e.SetDst(ethDst)
	e.SetSrc(senderMAC)
	e.SetEtherType(EtherTypeARP)
	a := f[EthernetHeaderLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], op)
	copy(a[8:14], senderMAC[:])
	copy(a[14:18], senderIP[:])
	copy(a[18:24], targetMAC[:])
	copy(a[24:28], targetIP[:])
	return f
}
