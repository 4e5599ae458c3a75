package packet

import "encoding/binary"

// VnetHdrLen is the size of struct virtio_net_hdr, the header a TAP opened
// with IFF_VNET_HDR and an AF_PACKET socket with PACKET_VNET_HDR put before
// every frame.
const VnetHdrLen = 10

// Offload flags and GSO types of a virtio-net header.
const (
	VnetNeedsCsum = 1 // the checksum at CsumStart+CsumOffset is partial
	VnetDataValid = 2 // the receiver need not verify the checksum

	GSONone   = 0
	GSOTCPv4  = 1
	GSOUDP    = 3 // UFO: not produced by any kernel uswitch offers it to
	GSOTCPv6  = 4
	GSOUDPL4  = 5
	GSOECN    = 0x80
	gsoTypeOf = 0x7f
)

// Offload is what a frame's virtio-net header says beyond its bytes: a
// transport checksum left partial (the pseudo-header sum in the checksum
// field, the rest to be summed from CsumStart), and for a GSO super-frame
// the segment size its payload is to be cut into. The zero value is a plain
// frame whose checksums are complete, which is what every port without
// offloads reads and writes.
type Offload struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16 // Ethernet, IP and transport headers (a hint)
	GSOSize    uint16 // payload bytes per segment
	CsumStart  uint16 // from the frame's first byte
	CsumOffset uint16 // from CsumStart: where the checksum field is
	// Queue is not part of the virtio-net header: the poll loop that read
	// the frame (0 for any other reader). A multi-queue TAP writes the
	// frame on its queue of that number (tap.MultiQueue), so that the
	// kernel's flow steering brings the flow's replies back to that loop.
	Queue uint8
}

// Plain reports whether the frame needs nothing done: no GSO and no
// partial checksum.
func (o Offload) Plain() bool { return o.Flags&VnetNeedsCsum == 0 && o.GSOType&gsoTypeOf == GSONone }

// IsGSO reports whether the frame is a super-frame to be segmented.
func (o Offload) IsGSO() bool { return o.GSOType&gsoTypeOf != GSONone }

// Type is the GSO type without the ECN bit.
func (o Offload) Type() uint8 { return o.GSOType & gsoTypeOf }

// NeedsCsum reports whether the transport checksum is partial.
func (o Offload) NeedsCsum() bool { return o.Flags&VnetNeedsCsum != 0 }

// DecodeVnetHdr reads a virtio-net header. The kernel writes it in the
// host's byte order (legacy virtio, which is what TAP and packet sockets
// use unless told otherwise).
func DecodeVnetHdr(b []byte) Offload {
	_ = b[VnetHdrLen-1]
	return Offload{
		Flags:      b[0],
		GSOType:    b[1],
		HdrLen:     binary.NativeEndian.Uint16(b[2:4]),
		GSOSize:    binary.NativeEndian.Uint16(b[4:6]),
		CsumStart:  binary.NativeEndian.Uint16(b[6:8]),
		CsumOffset: binary.NativeEndian.Uint16(b[8:10]),
	}
}

// PutVnetHdr writes o as a virtio-net header into b[:VnetHdrLen].
func (o Offload) PutVnetHdr(b []byte) {
	_ = b[VnetHdrLen-1]
	b[0] = o.Flags
	b[1] = o.GSOType
	binary.NativeEndian.PutUint16(b[2:4], o.HdrLen)
	binary.NativeEndian.PutUint16(b[4:6], o.GSOSize)
	binary.NativeEndian.PutUint16(b[6:8], o.CsumStart)
	binary.NativeEndian.PutUint16(b[8:10], o.CsumOffset)
}
