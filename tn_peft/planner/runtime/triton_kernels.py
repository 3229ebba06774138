"""Fused Triton kernels for the chains that dominate adapters, used automatically on CUDA.

- :func:`lowrank` -- ``y = scale * ((x V) * s) U^T`` (LoRA: ``V = A^T``, no s; canonical SVD:
  ``U diag(s) V^T``). One program per block of rows computes ``h = x V`` once (K is small, kept in
  registers), scales it, and streams ``h U^T`` out block by block: x is read once, h never touches
  memory. Backward (:class:`LowRank`) recomputes h and runs four matmuls, so autograd keeps only
  the inputs.
- :func:`circuit_rows` -- a renormalized node's gate network (``as_network()``: square gates on
  wires and CZ-like sign tensors) applied to the rows of a state, gate by gate, in one kernel;
  :func:`circuit_chain` fuses ``x -> V(gates) -> s -> U(gates)`` (Quantum-PEFT) into one launch.
  Each program owns a block of rows and ping-pongs them between two scratch rows in global memory
  (cache-resident); a gate on wire w reads, for every entry, the ``d_w`` entries that differ in
  digit w. Backward recomputes through the torch ops of ``as_network()`` (in float32 for half inputs,
  as the kernel computes).
- :func:`kron_rows` -- per-wire maps ``y[t, .., i_w, ..] = scale * sum_j F[i_w, j] x[t, .., j, ..]``
  applied wire after wire (Kronecker ``x (A (x) Ba Bb)^T``: each ``F`` takes its wire from ``d_in``
  to ``d_out``, so the row width changes per map; strides come from the host's op table), in the
  same table-driven kernel (op kind 3). Backward recomputes through torch ops.

``available()`` says whether triton imports. Tests run the kernels on CPU with
``TRITON_INTERPRET=1`` (set before triton is imported). Which problems run as which kernel is
decided in :mod:`.fused`.
"""

from __future__ import annotations

import functools
import math

import torch


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """True if triton imports (kernels run on CUDA, or anywhere under ``TRITON_INTERPRET=1``)."""
    try:
        import triton
        import triton.language  # noqa: F401
    except Exception:  # noqa: BLE001 # pragma: no cover - triton missing or broken
        return False
    return True


@functools.lru_cache(maxsize=1)
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def lowrank_kernel(x_ptr, v_ptr, s_ptr, u_ptr, y_ptr, T, N, M, K,
                       sxt, sxn, svn, svk, ss, sum_, suk, syt, sym, scale,
                       HAS_S: tl.constexpr, BT: tl.constexpr, BN: tl.constexpr, BM: tl.constexpr,
                       BK: tl.constexpr, PRECISION: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)      # row offsets in int64: T * N may pass 2^31
        rt = pid * BT + tl.arange(0, BT)
        rk = tl.arange(0, BK)
        h = tl.zeros((BT, BK), dtype=tl.float32)
        for n0 in range(0, N, BN):
            rn = n0 + tl.arange(0, BN)
            xb = tl.load(x_ptr + rt[:, None] * sxt + rn[None, :] * sxn,
                         mask=(rt[:, None] < T) & (rn[None, :] < N), other=0.0)
            vb = tl.load(v_ptr + rn[:, None] * svn + rk[None, :] * svk,
                         mask=(rn[:, None] < N) & (rk[None, :] < K), other=0.0)
            h += tl.dot(xb, vb, input_precision=PRECISION)
        if HAS_S:
            sv = tl.load(s_ptr + rk * ss, mask=rk < K, other=0.0)
            h = h * sv[None, :].to(tl.float32)
        h = h * scale
        for m0 in range(0, M, BM):
            rm = m0 + tl.arange(0, BM)
            ub = tl.load(u_ptr + rk[:, None] * suk + rm[None, :] * sum_,
                         mask=(rk[:, None] < K) & (rm[None, :] < M), other=0.0)
            yb = tl.dot(h.to(ub.dtype), ub, input_precision=PRECISION)
            tl.store(y_ptr + rt[:, None] * syt + rm[None, :] * sym, yb.to(y_ptr.dtype.element_ty),
                     mask=(rt[:, None] < T) & (rm[None, :] < M))

    @triton.jit
    def circuit_kernel(x_ptr, y_ptr, buf_ptr, ops_ptr, par_ptr, T, N_IN, N_OUT, n_ops,
                       sxt, syt, NP: tl.constexpr, MAXD: tl.constexpr, BT: tl.constexpr):
        # ops table rows (8 ints): kind, stride_a, dim_a, stride_b, dim_b, offset, length, 0
        # kind 0: square gate G (row-major at offset) on wire a: psi'[i] = sum_j G[i_a, j] psi[i; i_a <- j]
        # kind 1: sign table S[i_a, i_b] (offset) multiplies; kind 2: keep the first `length`
        # entries times par[offset + i] (the diagonal s, scale folded in), zero the rest;
        # kind 3: non-square map on one wire (dim_b -> dim_a), the state's width becomes `length`.
        pid = tl.program_id(0).to(tl.int64)      # offsets in int64: T * NP may pass 2^31
        rt = pid * BT + tl.arange(0, BT)
        idx = tl.arange(0, NP)
        rows = rt[:, None] < T
        src = buf_ptr + pid * 2 * BT * NP
        dst = src + BT * NP
        local = tl.arange(0, BT)[:, None] * NP + idx[None, :]
        state = tl.load(x_ptr + rt[:, None] * sxt + idx[None, :], mask=rows & (idx[None, :] < N_IN), other=0.0)
        state = state.to(tl.float32)
        tl.store(src + local, state)
        tl.debug_barrier()
        for op in range(n_ops):
            kind = tl.load(ops_ptr + op * 8)
            stride_a = tl.load(ops_ptr + op * 8 + 1)
            dim_a = tl.load(ops_ptr + op * 8 + 2)
            stride_b = tl.load(ops_ptr + op * 8 + 3)
            dim_b = tl.load(ops_ptr + op * 8 + 4)
            offset = tl.load(ops_ptr + op * 8 + 5)
            length = tl.load(ops_ptr + op * 8 + 6)
            digit = (idx // stride_a) % dim_a
            own = tl.load(src + local)
            if kind == 0:
                acc = tl.zeros((BT, NP), dtype=tl.float32)
                for j in range(MAXD):
                    ok = (digit * 0 + j) < dim_a                    # a block mask: j is a digit of wire a
                    g = tl.load(par_ptr + offset + digit * dim_a + j, mask=ok, other=0.0)
                    partner = idx + (j - digit) * stride_a
                    inside = ok & (partner >= 0) & (partner < NP)
                    v = tl.load(src + tl.arange(0, BT)[:, None] * NP + partner[None, :],
                                mask=(tl.arange(0, BT)[:, None] >= 0) & inside[None, :], other=0.0)
                    acc += g.to(tl.float32)[None, :] * v
                new = acc
            elif kind == 1:
                digit_b = (idx // stride_b) % dim_b
                sign = tl.load(par_ptr + offset + digit * dim_b + digit_b)
                new = own * sign.to(tl.float32)[None, :]
            elif kind == 2:
                keep = idx < length
                factor = tl.load(par_ptr + offset + idx, mask=keep, other=0.0)  # zero beyond k: truncate
                new = own * factor.to(tl.float32)[None, :]
            else:
                # map F (dim_a x dim_b, row-major at offset) on the wire of stride stride_a (the product
                # of the dims after it, the same before and after): dim_b -> dim_a. Output entry
                # idx = (hi, digit, lo) reads input entries (hi, j, lo) of the narrower/wider layout.
                lo = idx % stride_a
                base = (idx // (stride_a * dim_a)) * (dim_b * stride_a) + lo
                live = idx < length
                acc = tl.zeros((BT, NP), dtype=tl.float32)
                for j in range(MAXD):
                    ok = live & ((digit * 0 + j) < dim_b)
                    f = tl.load(par_ptr + offset + digit * dim_b + j, mask=ok, other=0.0)
                    v = tl.load(src + tl.arange(0, BT)[:, None] * NP + (base + j * stride_a)[None, :],
                                mask=(tl.arange(0, BT)[:, None] >= 0) & ok[None, :], other=0.0)
                    acc += f.to(tl.float32)[None, :] * v
                new = acc
            tl.store(dst + local, new)
            tl.debug_barrier()
            src, dst = dst, src
        out = tl.load(src + local)
        tl.store(y_ptr + rt[:, None] * syt + idx[None, :], out.to(y_ptr.dtype.element_ty),
                 mask=rows & (idx[None, :] < N_OUT))

    return lowrank_kernel, circuit_kernel


def _pow2(n: int, least: int = 16) -> int:
    return max(least, 1 << (max(n, 1) - 1).bit_length())


# ------------------------------------------------------------------------ low rank
def dot_precision() -> str:
    """How the kernels' float32 ``tl.dot`` multiplies, as torch's float32 matmuls do:
    ``torch.set_float32_matmul_precision("highest")`` (torch's default) -> "ieee" (true float32),
    "high" / "medium" -> "tf32". Triton's own default on CUDA is tf32, about 1e-3 relative error:
    the fused chain would not match the torch program it replaces. Other dtypes ignore it."""
    return "ieee" if torch.get_float32_matmul_precision() == "highest" else "tf32"


def lowrank_forward(x: torch.Tensor, v: torch.Tensor, s: torch.Tensor | None, u: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """``scale * ((x @ v) * s) @ u.T`` by one Triton launch (no autograd). x: (T, N), v: (N, K), u: (M, K);
    x, v and u share one dtype (``tl.dot`` multiplies no mixed pair); s may differ (read as float32)."""
    if not x.dtype == v.dtype == u.dtype:
        raise TypeError(f"the fused low-rank kernel multiplies x ({x.dtype}), V ({v.dtype}) and U ({u.dtype}) "
                        "in one dtype: cast them to one (under autocast, lowrank() does)")
    lowrank_kernel, _ = _kernels()
    t, n = x.shape
    m, k = u.shape
    y = torch.empty(t, m, dtype=x.dtype, device=x.device)
    bt, bn, bm, bk = 32, 64, 64, _pow2(k)
    s_arg = s if s is not None else u
    grid = (math.ceil(t / bt),)
    lowrank_kernel[grid](x, v, s_arg, u, y, t, n, m, k, x.stride(0), x.stride(1), v.stride(0), v.stride(1),
                         s.stride(0) if s is not None else 0, u.stride(0), u.stride(1), y.stride(0), y.stride(1),
                         float(scale), HAS_S=s is not None, BT=bt, BN=bn, BM=bm, BK=bk, PRECISION=dot_precision())
    return y


class LowRank(torch.autograd.Function):
    """Autograd for the fused chain: keeps x, V, s, U only; h = x V is recomputed in backward."""

    @staticmethod
    def forward(ctx, x, v, s, u, scale):
        ctx.save_for_backward(x, v, s, u)
        ctx.scale = scale
        return lowrank_forward(x, v, s, u, scale)

    @staticmethod
    def backward(ctx, grad):
        x, v, s, u = ctx.saved_tensors
        scale = ctx.scale
        need_x, need_v, need_s, need_u = ctx.needs_input_grad[:4]
        need_s = need_s and s is not None
        sx = s.to(x.dtype) if s is not None else None   # s may be float32 beside half x, V, U (autocast)
        grad = grad.to(x.dtype)
        h = x @ v if need_s or need_u else None     # (T, K), recomputed only when a gradient uses it
        gh = (grad @ u) * scale                     # (T, K): dL/d(h * s)
        du = grad.t() @ ((h * sx if s is not None else h) * scale) if need_u else None   # (M, K)
        ds = (gh.float() * h.float()).sum(0).to(s.dtype) if need_s else None
        gs = gh * sx if s is not None else gh
        dv = x.t() @ gs if need_v else None
        dx = gs @ v.t() if need_x else None
        return dx, dv, ds, du, None


def lowrank(x: torch.Tensor, v: torch.Tensor, s: torch.Tensor | None, u: torch.Tensor, scale: float = 1.0):
    """Differentiable ``scale * ((x @ v) * s) @ u.T`` through the fused kernel. Under autocast x, V and U
    are cast to the autocast dtype first, as torch's matmuls in the program it replaces cast them
    (s stays: an elementwise product is not cast); the result is in that dtype."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        dtype = torch.get_autocast_dtype(kind)
        x, v, u = x.to(dtype), v.to(dtype), u.to(dtype)
        with torch.autocast(kind, enabled=False):   # backward's matmuls then run in that dtype too
            return LowRank.apply(x, v, s, u, float(scale))
    return LowRank.apply(x, v, s, u, float(scale))


# ------------------------------------------------------------------------ circuits
def _circuit_table(network, transpose: bool, ops: list, params: list, cursor: int) -> int:
    """Append a CircuitNetwork's ops to the kernel's table; returns the next parameter offset."""
    dims = network.wire_dims
    strides = [math.prod(dims[w + 1:]) for w in range(len(dims))]
    sequence = list(reversed(network.ops)) if transpose else list(network.ops)
    for op in sequence:
        a = op.wires[0]
        if op.kind == "gate":
            g = op.tensor.t() if transpose else op.tensor
            ops.append([0, strides[a], dims[a], 1, 1, cursor, 0, 0])
            params.append(g.reshape(-1))
            cursor += g.numel()
        elif op.kind == "signs":
            b = op.wires[1]
            ops.append([1, strides[a], dims[a], strides[b], dims[b], cursor, 0, 0])
            params.append(op.tensor.reshape(-1))
            cursor += op.tensor.numel()
        else:
            raise ValueError(f"circuit op kind {op.kind!r} has no kernel")
    return cursor


def _run_circuits(x, parts, n_out: int) -> torch.Tensor:
    """Run a list of ("circuit", network, transpose) / ("diag", vector, k) parts on the rows of x."""
    ops: list = []
    params: list = []
    cursor = 0
    width = x.shape[1]
    maxd = 2
    for part in parts:
        if part[0] == "circuit":
            _, network, transpose = part
            cursor = _circuit_table(network, transpose, ops, params, cursor)
            maxd = max(maxd, max(network.wire_dims))
            width = max(width, network.size)
        else:
            _, vector, k = part
            ops.append([2, 1, 1, 1, 1, cursor, k, 0])
            params.append(vector.reshape(-1))
            cursor += vector.numel()
    return _launch(x, ops, params, max(width, n_out), n_out, maxd)


@functools.lru_cache(maxsize=256)
def _op_table(ops: tuple[tuple[int, ...], ...], device: torch.device) -> torch.Tensor:
    """The op table on the device, uploaded once per circuit structure (the angles change, it does not)."""
    return torch.tensor(ops, dtype=torch.int32, device=device).reshape(-1)


def _launch(x, ops: list, params: list, width: int, n_out: int, maxd: int) -> torch.Tensor:
    """One circuit_kernel launch over the rows of x: op table ``ops``, parameters ``params``, the
    widest state ``width``, output width ``n_out``, ``maxd`` the largest wire dimension a gate or map reads."""
    _, circuit_kernel = _kernels()
    t = x.shape[0]
    np_ = _pow2(width, least=2)
    bt = 4
    programs = math.ceil(t / bt)
    table = _op_table(tuple(map(tuple, ops)), x.device)
    par = torch.cat([p.to(torch.float32) for p in params]) if params else torch.zeros(1, device=x.device)
    buf = torch.empty(programs * 2 * bt * np_, dtype=torch.float32, device=x.device)
    y = torch.empty(t, n_out, dtype=x.dtype, device=x.device)
    x = x.contiguous()
    circuit_kernel[(programs,)](x, y, buf, table, par.contiguous(), t, x.shape[1], n_out, len(ops),
                                x.stride(0), y.stride(0), NP=np_, MAXD=maxd, BT=bt, num_warps=_warps(bt * np_))
    return y


def _warps(elements: int) -> int:
    """Warps for a program holding blocks of ``elements`` values: about 8 per thread (4 to 16 warps).
    With Triton's default 4 warps a 4 x 4096 state is 128 registers per thread per block, and the
    kernel's half-dozen live blocks spill to local memory."""
    return max(4, min(16, 1 << max(elements // 256 - 1, 0).bit_length()))


class _Recompute(torch.autograd.Function):
    """Forward by a kernel; backward by recomputing ``reference(*inputs)`` with torch ops.

    ``apply(kernel, reference, n, *inputs, *extra)``: the first ``n`` tensors are the kernel's and the
    reference's arguments; ``extra`` are tensors the two read from elsewhere (a circuit's gate
    tensors, built from the node's angles): they are inputs here only so that autograd sends their
    gradients on, to the angles. Without them the angles would silently get no gradient.
    """

    @staticmethod
    def forward(ctx, kernel, reference, n, *tensors):
        ctx.reference, ctx.n = reference, n
        ctx.extra = tensors[n:]
        kind = tensors[0].device.type   # the reference reruns under the forward's autocast state
        ctx.autocast = (kind, torch.get_autocast_dtype(kind), torch.is_autocast_enabled(kind))
        ctx.save_for_backward(*tensors[:n])
        return kernel(*tensors[:n])

    @staticmethod
    def backward(ctx, grad):
        # half inputs are recomputed in float32, as the kernel computed the forward pass
        saved = ctx.saved_tensors
        inputs = [_widen(t).detach().requires_grad_(t.requires_grad) for t in saved]
        kind, dtype, enabled = ctx.autocast
        with torch.enable_grad(), torch.autocast(kind, dtype=dtype, enabled=enabled):
            out = ctx.reference(*inputs)
        wanted = [t for t in (*inputs, *ctx.extra) if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad.to(out.dtype), allow_unused=True)) if wanted else iter(())
        result = [next(grads) if t.requires_grad else None for t in (*inputs, *ctx.extra)]
        for k, t in enumerate(saved):   # each gradient in its input's dtype
            if result[k] is not None:
                result[k] = result[k].to(t.dtype)
        return (None, None, None, *result)


def _widen(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32 if it is a half-precision float (bf16, fp16), else itself."""
    return t.float() if t.is_floating_point() and t.element_size() < 4 else t


def _recompute(kernel, reference, inputs, networks=()):
    """``kernel(*inputs)``, differentiable through ``reference`` (and the gate tensors of ``networks``)."""
    if not torch.is_grad_enabled():
        return kernel(*inputs)
    extra = [op.tensor for network in networks for op in network.ops if op.tensor.requires_grad]
    if not any(t.requires_grad for t in (*inputs, *extra)):
        return kernel(*inputs)
    return _Recompute.apply(kernel, reference, len(inputs), *inputs, *extra)


def circuit_rows(x: torch.Tensor, node, transpose: bool = True) -> torch.Tensor:
    """``x @ Q`` (``transpose=True``, rows of length N -> k) or ``x @ Q^T`` (k -> N) for a circuit node."""
    network = node.as_network() if hasattr(node, "as_network") else node
    n_out = network.k if transpose else network.size

    def kernel(x_):
        return _run_circuits(x_, [("circuit", network, transpose)], n_out)

    def reference(x_):
        return network.apply(x_) if transpose else network.apply_transpose(x_)

    return _recompute(kernel, reference, [x], [network])


def circuit_chain(x: torch.Tensor, v_node, s: torch.Tensor, u_node, scale: float = 1.0) -> torch.Tensor:
    """``scale * U(diag s)V^T`` applied to rows of x, both circuits gate by gate, in one launch."""
    v_net, u_net = v_node.as_network(), u_node.as_network()
    k = v_net.k

    def kernel(x_, s_):
        parts = [("circuit", v_net, True), ("diag", s_ * scale, k), ("circuit", u_net, False)]
        return _run_circuits(x_, parts, u_net.size)

    def reference(x_, s_):
        return u_net.apply_transpose(v_net.apply(x_) * (s_ * scale))

    return _recompute(kernel, reference, [x, s], [v_net, u_net])


# ------------------------------------------------------------------------ per-wire maps
def _run_maps(x: torch.Tensor, dims, maps, scale: float) -> torch.Tensor:
    """``scale *`` the maps ``[(wire, F[d_out, d_in]), ...]`` applied in order to the rows of x viewed
    as ``(T, *dims)``, in one launch (no autograd). Returns ``(T, prod(final dims))``."""
    dims = list(dims)
    width = widest = math.prod(dims)
    if x.shape[1] != width:
        raise ValueError(f"rows of width {x.shape[1]} do not match wire dims {tuple(dims)}")
    ops: list = []
    params: list = []
    cursor = 0
    maxd = 2
    small = min(range(len(maps)), key=lambda n: maps[n][1].numel()) if maps else None
    for n, (w, f) in enumerate(maps):
        d_out, d_in = f.shape
        if d_in != dims[w]:
            raise ValueError(f"map {n} takes dimension {d_in} on wire {w}, which has {dims[w]}")
        stride = math.prod(dims[w + 1:])       # unchanged by the map: only wire w's dimension changes
        width = width // d_in * d_out
        ops.append([3, stride, d_out, 1, d_in, cursor, width, 0])
        params.append((f * scale if n == small else f).reshape(-1))   # scale folded into the smallest
        cursor += f.numel()
        dims[w] = d_out
        widest, maxd = max(widest, width), max(maxd, d_in)
    if not maps:
        ops.append([2, 1, 1, 1, 1, 0, width, 0])
        params.append(torch.full((width,), float(scale), device=x.device))
    return _launch(x, ops, params, widest, width, maxd)


def kron_rows(x: torch.Tensor, dims, maps, scale: float = 1.0, perm=None) -> torch.Tensor:
    """Differentiable per-wire maps on the rows of x: x viewed as ``(T, *dims)``, each ``(wire, F)`` of
    ``maps`` in order takes wire ``wire`` from ``F.shape[1]`` to ``F.shape[0]`` (``F`` may be a view,
    e.g. a transpose or ``torch.diag(s)``); the result times ``scale`` is ``(T, prod(final dims))``,
    its wires reordered by ``perm`` (output wire k = wire ``perm[k]``) if given. Forward by one kernel
    launch; backward recomputes through torch ops (gradients for x and every F)."""
    wires = [w for w, _ in maps]
    dims = tuple(int(d) for d in dims)
    final = list(dims)
    for w, f in maps:
        final[w] = f.shape[0]

    def kernel(x_, *mats):
        return _run_maps(x_.contiguous(), dims, list(zip(wires, mats)), scale)

    def reference(x_, *mats):
        state = x_.reshape(x_.shape[0], *dims)
        for w, f in zip(wires, mats):
            state = torch.movedim(torch.movedim(state, w + 1, -1) @ f.t().to(state.dtype), -1, w + 1)
        return state.reshape(x_.shape[0], -1) * scale

    mats = [f for _, f in maps]
    y = _recompute(kernel, reference, [x, *mats])
    if perm is not None and list(perm) != list(range(len(dims))):
        y = y.reshape(y.shape[0], *final).permute(0, *[1 + p for p in perm]).reshape(y.shape[0], -1)
    return y
