#include "textflag.h"

// func dotsAVX(q, k *float32, ld, n int, out *float32, cnt int)
//
// Each dot product is gonum's f32.DotUnitary for a 16-byte aligned second operand and a length
// that is a multiple of 16: its SUM and P_SUM (4 lanes each) are the low and high halves of one
// 8-lane accumulator here, fed the same rounded products in the same order; SUM + P_SUM and two
// horizontal adds finish it. Four keys share each load of q.
TEXT ·dotsAVX(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ k+8(FP), DI
	MOVQ ld+16(FP), DX
	SHLQ $2, DX
	MOVQ n+24(FP), BX
	SHLQ $2, BX
	MOVQ out+32(FP), R8
	MOVQ cnt+40(FP), R9

four:
	CMPQ R9, $4
	JL   one
	LEAQ (DI)(DX*1), R10
	LEAQ (R10)(DX*1), R11
	LEAQ (R11)(DX*1), R12
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	XORQ   AX, AX

four_loop:
	VMOVUPS (SI)(AX*1), Y4
	VMULPS  (DI)(AX*1), Y4, Y5
	VADDPS  Y5, Y0, Y0
	VMULPS  (R10)(AX*1), Y4, Y6
	VADDPS  Y6, Y1, Y1
	VMULPS  (R11)(AX*1), Y4, Y7
	VADDPS  Y7, Y2, Y2
	VMULPS  (R12)(AX*1), Y4, Y8
	VADDPS  Y8, Y3, Y3
	ADDQ    $32, AX
	CMPQ    AX, BX
	JL      four_loop

	VEXTRACTF128 $1, Y0, X4
	VADDPS       X4, X0, X0
	VEXTRACTF128 $1, Y1, X5
	VADDPS       X5, X1, X1
	VEXTRACTF128 $1, Y2, X6
	VADDPS       X6, X2, X2
	VEXTRACTF128 $1, Y3, X7
	VADDPS       X7, X3, X3
	VHADDPS      X1, X0, X0 // [k0: s0+s1, s2+s3, k1: s0+s1, s2+s3]
	VHADDPS      X3, X2, X2 // the same for k2, k3
	VHADDPS      X2, X0, X0 // [(s0+s1)+(s2+s3) of k0, k1, k2, k3]
	VMOVUPS      X0, (R8)
	LEAQ         (R12)(DX*1), DI
	ADDQ         $16, R8
	SUBQ         $4, R9
	JMP          four

one:
	TESTQ  R9, R9
	JE     dots_done
	VXORPS Y0, Y0, Y0
	XORQ   AX, AX

one_loop:
	VMOVUPS (SI)(AX*1), Y4
	VMULPS  (DI)(AX*1), Y4, Y5
	VADDPS  Y5, Y0, Y0
	ADDQ    $32, AX
	CMPQ    AX, BX
	JL      one_loop

	VEXTRACTF128 $1, Y0, X4
	VADDPS       X4, X0, X0
	VHADDPS      X0, X0, X0
	VHADDPS      X0, X0, X0
	VMOVSS       X0, (R8)
	ADDQ         DX, DI
	ADDQ         $4, R8
	DECQ         R9
	JMP          one

dots_done:
	VZEROUPPER
	RET

// func axpysAVX(out *float32, n int, p, v *float32, ld, cnt int)
//
// out[i] += p[j] * v[j*ld+i], j in order, each product rounded before it is added (no FMA), the
// j with p[j] == 0 skipped: gonum's Sgemm (NoTrans, NoTrans) of one row, element for element.
// The row is kept in registers 64 (then 8) columns at a time.
TEXT ·axpysAVX(SB), NOSPLIT, $0-48
	MOVQ   out+0(FP), DI
	MOVQ   n+8(FP), BX
	MOVQ   p+16(FP), SI
	MOVQ   v+24(FP), R8
	MOVQ   ld+32(FP), DX
	SHLQ   $2, DX
	MOVQ   cnt+40(FP), R9
	VXORPS X14, X14, X14

wide:
	CMPQ    BX, $64
	JL      narrow
	VMOVUPS (DI), Y0
	VMOVUPS 32(DI), Y1
	VMOVUPS 64(DI), Y2
	VMOVUPS 96(DI), Y3
	VMOVUPS 128(DI), Y4
	VMOVUPS 160(DI), Y5
	VMOVUPS 192(DI), Y6
	VMOVUPS 224(DI), Y7
	MOVQ    SI, R10
	MOVQ    R8, R11
	MOVQ    R9, CX

wide_loop:
	TESTQ    CX, CX
	JE       wide_store
	VMOVSS   (R10), X15
	VUCOMISS X14, X15
	JNE      wide_add
	JPS      wide_add
	JMP      wide_next

wide_add:
	VBROADCASTSS (R10), Y15
	VMULPS       (R11), Y15, Y8
	VADDPS       Y8, Y0, Y0
	VMULPS       32(R11), Y15, Y9
	VADDPS       Y9, Y1, Y1
	VMULPS       64(R11), Y15, Y10
	VADDPS       Y10, Y2, Y2
	VMULPS       96(R11), Y15, Y11
	VADDPS       Y11, Y3, Y3
	VMULPS       128(R11), Y15, Y12
	VADDPS       Y12, Y4, Y4
	VMULPS       160(R11), Y15, Y13
	VADDPS       Y13, Y5, Y5
	VMULPS       192(R11), Y15, Y8
	VADDPS       Y8, Y6, Y6
	VMULPS       224(R11), Y15, Y9
	VADDPS       Y9, Y7, Y7

wide_next:
	ADDQ $4, R10
	ADDQ DX, R11
	DECQ CX
	JMP  wide_loop

wide_store:
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	VMOVUPS Y4, 128(DI)
	VMOVUPS Y5, 160(DI)
	VMOVUPS Y6, 192(DI)
	VMOVUPS Y7, 224(DI)
	ADDQ    $256, DI
	ADDQ    $256, R8
	SUBQ    $64, BX
	JMP     wide

narrow:
	CMPQ    BX, $8
	JL      axpys_done
	VMOVUPS (DI), Y0
	MOVQ    SI, R10
	MOVQ    R8, R11
	MOVQ    R9, CX

narrow_loop:
	TESTQ    CX, CX
	JE       narrow_store
	VMOVSS   (R10), X15
	VUCOMISS X14, X15
	JNE      narrow_add
	JPS      narrow_add
	JMP      narrow_next

narrow_add:
	VBROADCASTSS (R10), Y15
	VMULPS       (R11), Y15, Y8
	VADDPS       Y8, Y0, Y0

narrow_next:
	ADDQ $4, R10
	ADDQ DX, R11
	DECQ CX
	JMP  narrow_loop

narrow_store:
	VMOVUPS Y0, (DI)
	ADDQ    $32, DI
	ADDQ    $32, R8
	SUBQ    $8, BX
	JMP     narrow

axpys_done:
	VZEROUPPER
	RET
