package linalg

// cpuid executes the CPUID instruction with EAX=leaf and ECX=sub.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// cpuSignature reads the vendor and the family/model/stepping signature.
func cpuSignature() (vendor string, family, model, stepping int) {
	_, ebx, ecx, edx := cpuid(0, 0)
	eax1, _, _, _ := cpuid(1, 0)
	return decodeSignature(ebx, ecx, edx, eax1)
}
