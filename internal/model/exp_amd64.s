#include "textflag.h"

// The vector form of Go's math.Exp on amd64 with FMA (math/exp_amd64.s, its avxfma path): the
// same reduction, the same Taylor polynomial in the same fused operations and the same scaling,
// four float64 lanes at a time, so every lane gets the bits math.Exp gives. Lanes are only
// computed where that path is the one math.Exp takes: a chunk with |x| > 708 or a NaN stops the
// kernel (math.Exp's special, overflow and denormal paths start beyond 708.39).

// Each constant four times, for memory operands of 256-bit instructions; the float64 ones are
// math/exp_amd64.s's decimal strings, so the assembler rounds them to the same bits.
#define CONST4(name, bits) \
	DATA name<>+0(SB)/8, $bits \
	DATA name<>+8(SB)/8, $bits \
	DATA name<>+16(SB)/8, $bits \
	DATA name<>+24(SB)/8, $bits \
	GLOBL name<>(SB), RODATA|NOPTR, $32

CONST4(explog2e, 1.4426950408889634073599246810018920)
CONST4(expln2u, 0.69314718055966295651160180568695068359375)
CONST4(expln2l, 0.28235290563031577122588448175013436025525412068e-12)
CONST4(exp1_16, 0.0625)
CONST4(expc64, 2.4801587301587301587e-5)
CONST4(expc56, 1.9841269841269841270e-4)
CONST4(expc48, 1.3888888888888888889e-3)
CONST4(expc40, 8.3333333333333333333e-3)
CONST4(expc32, 4.1666666666666666667e-2)
CONST4(expc24, 1.6666666666666666667e-1)
CONST4(exphalf, 0.5)
CONST4(expone, 1.0)
CONST4(exptwo, 2.0)
CONST4(explimit, 708.0)
CONST4(expabs, 0x7FFFFFFFFFFFFFFF)   // clears the sign
CONST4(expsign, 0x8000000000000000)  // the sign
CONST4(expbias, 0x00000000000003FF)  // 1023, the exponent bias

// EXPCHECK jumps to bail unless every lane of x has |x| <= 708 (a NaN fails: predicate 0x16 is
// not-less-or-equal, true when unordered). Clobbers Y8, AX.
#define EXPCHECK(x, bail) \
	VANDPD     expabs<>(SB), x, Y8 \
	VCMPPD     $0x16, explimit<>(SB), Y8, Y8 \
	VMOVMSKPD  Y8, AX \
	TESTL      AX, AX \
	JNE        bail

// EXP4 sets e to math.Exp of each lane of x; the exponent is rounded by VCVTPD2DQ as CVTSD2SL
// rounds it in math.Exp (the MXCSR mode, to nearest). Clobbers Y9-Y12.
#define EXP4(x, e) \
	VMULPD       explog2e<>(SB), x, Y9 \
	VCVTPD2DQY   Y9, X10 \
	VCVTDQ2PD    X10, Y9 \
	VMOVAPD      x, e \
	VFNMADD231PD expln2u<>(SB), Y9, e \
	VFNMADD231PD expln2l<>(SB), Y9, e \
	VMULPD       exp1_16<>(SB), e, e \
	VMOVAPD      expc64<>(SB), Y11 \
	VFMADD213PD  expc56<>(SB), e, Y11 \
	VFMADD213PD  expc48<>(SB), e, Y11 \
	VFMADD213PD  expc40<>(SB), e, Y11 \
	VFMADD213PD  expc32<>(SB), e, Y11 \
	VFMADD213PD  expc24<>(SB), e, Y11 \
	VFMADD213PD  exphalf<>(SB), e, Y11 \
	VFMADD213PD  expone<>(SB), e, Y11 \
	VMULPD       Y11, e, e \
	VADDPD       exptwo<>(SB), e, Y11 \
	VMULPD       Y11, e, e \
	VADDPD       exptwo<>(SB), e, Y11 \
	VMULPD       Y11, e, e \
	VADDPD       exptwo<>(SB), e, Y11 \
	VMULPD       Y11, e, e \
	VADDPD       exptwo<>(SB), e, Y11 \
	VFMADD213PD  expone<>(SB), Y11, e \
	VPMOVSXDQ    X10, Y12 \
	VPADDQ       expbias<>(SB), Y12, Y12 \
	VPSLLQ       $52, Y12, Y12 \
	VMULPD       Y12, e, e

// func siluMulFMA(a, x, y *float32, n int) int
//
// a[j] = float32(float64(x[j]) / (1 + math.Exp(-float64(x[j])))) * y[j] for j < n rounded down to
// a multiple of 4, chunk by chunk; returns the number of elements done, which is less when a
// chunk has an x with |x| > 708 or a NaN (that chunk is left undone).
TEXT ·siluMulFMA(SB), NOSPLIT, $0-40
	MOVQ a+0(FP), DI
	MOVQ x+8(FP), SI
	MOVQ y+16(FP), DX
	MOVQ n+24(FP), CX
	ANDQ $-4, CX
	XORQ BX, BX

silu_loop:
	CMPQ BX, CX
	JGE  silu_done
	VCVTPS2PD (SI)(BX*4), Y0      // d = float64(x)
	VXORPD    expsign<>(SB), Y0, Y1 // -d
	EXPCHECK(Y1, silu_done)
	EXP4(Y1, Y2)
	VADDPD     expone<>(SB), Y2, Y2 // 1 + e
	VDIVPD     Y2, Y0, Y3           // d / (1 + e)
	VCVTPD2PSY Y3, X4               // float32, rounded as CVTSD2SS rounds
	VMULPS     (DX)(BX*4), X4, X4   // * y
	VMOVUPS    X4, (DI)(BX*4)
	ADDQ       $4, BX
	JMP        silu_loop

silu_done:
	MOVQ BX, ret+32(FP)
	VZEROUPPER
	RET

// func expSumFMA(row *float32, n int, mx float32, sum *float64) int
//
// For j < n rounded down to a multiple of 4, chunk by chunk: e = math.Exp(float64(row[j] - mx))
// (the difference taken in float32), row[j] = float32(e) and *sum += e, the sums one at a time
// in j order; returns the number of elements done, which is less when a chunk has a difference
// with |x| > 708 or a NaN (that chunk is left undone, *sum without it).
TEXT ·expSumFMA(SB), NOSPLIT, $0-40
	MOVQ         row+0(FP), DI
	MOVQ         n+8(FP), CX
	ANDQ         $-4, CX
	VBROADCASTSS mx+16(FP), X6
	MOVQ         sum+24(FP), DX
	VMOVSD       (DX), X7
	XORQ         BX, BX

expsum_loop:
	CMPQ      BX, CX
	JGE       expsum_done
	VMOVUPS   (DI)(BX*4), X0
	VSUBPS    X6, X0, X0 // row - mx, in float32
	VCVTPS2PD X0, Y1
	EXPCHECK(Y1, expsum_done)
	EXP4(Y1, Y2)
	VCVTPD2PSY    Y2, X3
	VMOVUPS       X3, (DI)(BX*4)
	VADDSD        X2, X7, X7 // the sum, lane by lane in order
	VPERMILPD     $1, X2, X4
	VADDSD        X4, X7, X7
	VEXTRACTF128  $1, Y2, X5
	VADDSD        X5, X7, X7
	VPERMILPD     $1, X5, X4
	VADDSD        X4, X7, X7
	ADDQ          $4, BX
	JMP           expsum_loop

expsum_done:
	VMOVSD X7, (DX)
	MOVQ   BX, ret+32(FP)
	VZEROUPPER
	RET

// func exp4FMA(x, e *[4]float64)
//
// e[i] = math.Exp(x[i]) for |x[i]| <= 708 (other lanes are not defined): the kernel's exp alone,
// for the check that it agrees with math.Exp on this CPU and for its tests.
TEXT ·exp4FMA(SB), NOSPLIT, $0-16
	MOVQ    x+0(FP), SI
	MOVQ    e+8(FP), DI
	VMOVUPD (SI), Y1
	EXP4(Y1, Y2)
	VMOVUPD Y2, (DI)
	VZEROUPPER
	RET
