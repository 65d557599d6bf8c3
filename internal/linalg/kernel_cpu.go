package linalg

import (
	"runtime"

	"golang.org/x/sys/cpu"
)

// hostCPU describes the processor this process runs on. The feature bits
// come from golang.org/x/sys/cpu, which also checks (with xgetbv) that the OS
// saves the AVX and AVX-512 register state; vendor, family and model come
// from cpuid leaves 0 and 1, which x/sys/cpu does not expose.
func hostCPU() cpuInfo {
	c := cpuInfo{Arch: runtime.GOARCH}
	if runtime.GOARCH != "amd64" {
		return c
	}
	c.Vendor, c.Family, c.Model, c.Stepping = cpuSignature()
	c.AVX2 = cpu.X86.HasAVX2
	c.FMA = cpu.X86.HasFMA
	c.AVX512 = cpu.X86.HasAVX512F && cpu.X86.HasAVX512CD && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL
	c.AVX512BF16 = cpu.X86.HasAVX512BF16
	c.AMXBF16 = cpu.X86.HasAMXBF16
	return c
}

// decodeSignature turns cpuid leaf 0's vendor registers and leaf 1's EAX
// into the vendor string and the display family, model and stepping, as the
// Linux kernel computes them: the extended family is added when the base
// family is 15, and the extended model is prepended when the family is 6 or
// more.
func decodeSignature(ebx, ecx, edx, eax1 uint32) (vendor string, family, model, stepping int) {
	var b [12]byte
	for i, r := range []uint32{ebx, edx, ecx} {
		for j := 0; j < 4; j++ {
			b[4*i+j] = byte(r >> (8 * j))
		}
	}
	vendor = string(b[:])
	stepping = int(eax1 & 0xf)
	model = int(eax1>>4) & 0xf
	family = int(eax1>>8) & 0xf
	if family == 0xf {
		family += int(eax1>>20) & 0xff
	}
	if family >= 0x6 {
		model += (int(eax1>>16) & 0xf) << 4
	}
	return vendor, family, model, stepping
}
