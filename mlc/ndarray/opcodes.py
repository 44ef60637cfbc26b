"""The small integer codes a kernel branches on, shared by the Numba CPU and CUDA kernels.

One compiled kernel serves a family of operations (every binary op, every unary op, the
three strided walks, both reductions); the backend passes the code of the one it wants.
"""

# binary ops (the scalar_r* forms compute ``val <op> a``)
ADD, SUB, MUL, DIV, POW, MAX, MIN, EQ, NE, LT, LE, GT, GE, RSUB, RDIV, RPOW = range(16)
# unary ops
NEG, LOG, EXP, TANH, ABS, SQRT, ERF = range(7)
# strided walks: flat <- view (compact), view <- flat (setitem), view <- value (fill)
GATHER, SCATTER, FILL = range(3)
# reductions (MAX_, since MAX is the binary op)
SUM, MAX_ = range(2)
