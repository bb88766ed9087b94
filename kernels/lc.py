"""Triton kernels for the locally connected layer (implicit im2col: patches are gathered from the input inside
each program; the unfolded tensor never exists in memory).

Layout, as in bpcompile's reference ops: x (B, C, H, W); weight (P, O, K) with P = H_out * W_out output positions
and K = kernel * kernel * C patch entries ordered (kernel row i, kernel col j, channel ch), channel fastest;
bias (O, H_out, W_out); out (B, O, H_out, W_out). The patch entry k of position p = (r, c) is
x[b, ch, r * stride + i - padding, c * stride + j - padding] (zero outside the input).

* `lc_forward`:      out[b, o, p] = sum_k weight[p, o, k] * patch[b, k, p] + bias[o, p]
                     one program per (position, batch block, out-channel block): a (B x K) @ (K x O) product.
* `lc_grad_weight`:  grad_w[p, o, k] = sum_b grad_out[b, o, p] * patch[b, k, p]
                     one program per (position, out-channel block, patch-entry block), reducing over the batch.
* `lc_grad_input`:   grad_x[b, ch, h, w] = sum over the output positions p whose window covers (h, w), and o, of
                     grad_out[b, o, p] * weight[p, o, k(h, w, ch)]  -- written as a gather per input pixel (no
                     atomics): one program per (input pixel, batch block, channel block) visits only the
                     <= ceil(kernel / stride)^2 windows covering its pixel. `weight` may be any tensor of W's layout (W for BP, B for FA/KP/WM);
                     sign_weight=True uses sign(weight), computed on the fly (sign symmetry, no stored copy).
* `lc_grad_input_cells`: the same sum, one program per stride cell (stride x stride input pixels, which share the
                     <= ceil(kernel / stride)^2 windows covering them): each window's grad_out tile is read once
                     per cell instead of once per pixel, and the dot's columns are the cell's stride^2 * C entries
                     (1-3 input channels no longer fill a 16-wide block alone). At stride 1 it is lc_grad_input.

Inputs are taken with their strides (non-contiguous inputs work; x is made channels-last first so that patch
entries, channel fastest, are contiguous in memory). The `*_cl` variants of the two backward kernels first copy
grad_out channels-last: both read (batch x out-channel) tiles of grad_out at one output position, which are P
elements apart per out-channel in the contiguous (B, O, P) layout and contiguous in (B, P, O) -- one extra pass
over grad_out for coalesced tiles, the input gradient re-reading each tile for every input pixel its window
covers. Which is faster per shape is measured, not assumed (bpcompile's 'auto' lowering times both). Matrix products accumulate in fp32; they use TF32 when
torch.backends.cuda.matmul.allow_tf32 is set, bf16 inputs give bf16 outputs. On a GPU the block sizes are
autotuned; under the Triton interpreter (TRITON_INTERPRET=1, the CPU tests) one fixed configuration is used
(kernels/tiling.py). The patch-address decoding the forward and weight-gradient kernels share is one @triton.jit
helper, `_patch_addresses`.
This module imports nothing of bpcompile."""

import torch
import triton
import triton.language as tl

from .tiling import autotuned, configs


def _precision() -> str:
    return "tf32" if torch.backends.cuda.matmul.allow_tf32 else "ieee"


@triton.jit
def _patch_addresses(p, offs_k, K, C, H, W, W_OUT, sxc, sxh, sxw,
                     KERNEL: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr):
    """Output position p's patch entries offs_k -> (offsets into one image of x, which entries lie inside it).
    Entry k is (kernel row, kernel col, channel) = (k // (KERNEL C), (k // C) % KERNEL, k % C), channel fastest."""
    r = p // W_OUT
    c = p % W_OUT
    i = offs_k // (KERNEL * C)
    j = (offs_k // C) % KERNEL
    ch = offs_k % C
    h = r * STRIDE + i - PAD
    w = c * STRIDE + j - PAD
    inside = (offs_k < K) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    return ch * sxc + h * sxh + w * sxw, inside


# ---- forward -------------------------------------------------------------------------------------------------

@triton.jit
def _lc_forward_kernel(
    x_ptr, w_ptr, b_ptr, out_ptr,
    B, C, H, W, O, K, W_OUT, P,
    sxb, sxc, sxh, sxw, swp, swo, swk,
    KERNEL: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, HAS_BIAS: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
):
    p = tl.program_id(0)
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_o = tl.program_id(2) * BLOCK_O + tl.arange(0, BLOCK_O)
    acc = tl.zeros((BLOCK_B, BLOCK_O), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        pixel, k_ok = _patch_addresses(p, offs_k, K, C, H, W, W_OUT, sxc, sxh, sxw, KERNEL, STRIDE, PAD)
        patch = tl.load(
            x_ptr + offs_b[:, None] * sxb + pixel[None, :],
            mask=(offs_b[:, None] < B) & k_ok[None, :], other=0.0,
        )
        weight = tl.load(
            w_ptr + p * swp + offs_o[None, :] * swo + offs_k[:, None] * swk,
            mask=(offs_o[None, :] < O) & (offs_k[:, None] < K), other=0.0,
        )
        acc = tl.dot(patch, weight, acc, input_precision=INPUT_PRECISION)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_o * P + p, mask=offs_o < O, other=0.0).to(tl.float32)[None, :]
    # out is contiguous (B, O, P)
    tl.store(out_ptr + offs_b[:, None] * (O * P) + offs_o[None, :] * P + p,
             acc.to(out_ptr.dtype.element_ty), mask=(offs_b[:, None] < B) & (offs_o[None, :] < O))


# a few configurations each: every (kernel, stride, padding) is its own compile, so autotuning time grows fast
_FWD_CONFIGS = configs(("BLOCK_B", "BLOCK_O", "BLOCK_K"), [(32, 32, 32), (64, 64, 32), (128, 64, 32), (128, 128, 32)])
_lc_forward, _FWD_FIXED = autotuned(_lc_forward_kernel, _FWD_CONFIGS, ["B", "O", "K", "P"])


def _out_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def lc_forward(x, weight, bias, kernel, stride, padding):
    batch, channels, height, width = x.shape
    positions, out_ch, k_total = weight.shape
    h_out, w_out = _out_size(height, kernel, stride, padding), _out_size(width, kernel, stride, padding)
    assert positions == h_out * w_out and k_total == kernel * kernel * channels, "weight does not fit the input"
    x = x.contiguous(memory_format=torch.channels_last)   # channel fastest: a patch row is contiguous
    out = torch.empty(batch, out_ch, h_out, w_out, device=x.device, dtype=x.dtype)
    bias_arg = bias.contiguous() if bias is not None else out     # any pointer when there is no bias

    def grid(meta):
        return (positions, triton.cdiv(batch, meta["BLOCK_B"]), triton.cdiv(out_ch, meta["BLOCK_O"]))

    _lc_forward[grid](
        x, weight, bias_arg, out,
        batch, channels, height, width, out_ch, k_total, w_out, positions,
        *x.stride(), *weight.stride(),
        KERNEL=kernel, STRIDE=stride, PAD=padding, HAS_BIAS=bias is not None, INPUT_PRECISION=_precision(),
        **_FWD_FIXED,
    )
    return out


# ---- weight gradient -----------------------------------------------------------------------------------------

@triton.jit
def _lc_grad_weight_kernel(
    g_ptr, x_ptr, gw_ptr,
    B, C, H, W, O, K, W_OUT,
    sgb, sgo, sgp, sxb, sxc, sxh, sxw,
    KERNEL: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
):
    p = tl.program_id(0)
    offs_o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    offs_k = tl.program_id(2) * BLOCK_K + tl.arange(0, BLOCK_K)
    pixel, k_ok = _patch_addresses(p, offs_k, K, C, H, W, W_OUT, sxc, sxh, sxw, KERNEL, STRIDE, PAD)
    acc = tl.zeros((BLOCK_O, BLOCK_K), dtype=tl.float32)
    for b0 in range(0, B, BLOCK_B):
        offs_b = b0 + tl.arange(0, BLOCK_B)
        grad = tl.load(g_ptr + offs_o[:, None] * sgo + offs_b[None, :] * sgb + p * sgp,
                       mask=(offs_o[:, None] < O) & (offs_b[None, :] < B), other=0.0)
        patch = tl.load(x_ptr + offs_b[:, None] * sxb + pixel[None, :],
                        mask=(offs_b[:, None] < B) & k_ok[None, :], other=0.0)
        acc = tl.dot(grad, patch, acc, input_precision=INPUT_PRECISION)
    # grad_w is contiguous (P, O, K)
    tl.store(gw_ptr + p * (O * K) + offs_o[:, None] * K + offs_k[None, :],
             acc.to(gw_ptr.dtype.element_ty), mask=(offs_o[:, None] < O) & (offs_k[None, :] < K))


_GW_CONFIGS = configs(("BLOCK_B", "BLOCK_O", "BLOCK_K"), [(32, 32, 32), (32, 64, 64), (64, 64, 64), (32, 128, 64)])
_lc_grad_weight, _GW_FIXED = autotuned(_lc_grad_weight_kernel, _GW_CONFIGS, ["B", "O", "K"])


def lc_grad_weight(grad_out, x, kernel, stride, padding):
    batch, channels, height, width = x.shape
    _, out_ch, h_out, w_out = grad_out.shape
    positions, k_total = h_out * w_out, kernel * kernel * channels
    x = x.contiguous(memory_format=torch.channels_last)
    grad_flat = grad_out.reshape(batch, out_ch, positions)          # a view when grad_out is contiguous
    grad_w = torch.empty(positions, out_ch, k_total, device=x.device, dtype=x.dtype)

    def grid(meta):
        return (positions, triton.cdiv(out_ch, meta["BLOCK_O"]), triton.cdiv(k_total, meta["BLOCK_K"]))

    _lc_grad_weight[grid](
        grad_flat, x, grad_w,
        batch, channels, height, width, out_ch, k_total, w_out,
        *grad_flat.stride(), *x.stride(),
        KERNEL=kernel, STRIDE=stride, PAD=padding, INPUT_PRECISION=_precision(),
        **_GW_FIXED,
    )
    return grad_w


# ---- input gradient ------------------------------------------------------------------------------------------

@triton.jit
def _add_window(acc, g_ptr, w_ptr, p, offs_b, k, k_ok, B, O, sgb, sgo, sgp, swp, swo, swk,
                SIGN: tl.constexpr, INPUT_PRECISION: tl.constexpr, BLOCK_O: tl.constexpr):
    """acc + grad_out[offs_b, :, p] @ weight[p, :, k] over every out-channel (sign(weight) when SIGN): one
    covering window's share of the input gradient, for the patch entries k (masked by k_ok)."""
    for o0 in range(0, O, BLOCK_O):
        offs_o = o0 + tl.arange(0, BLOCK_O)
        grad = tl.load(g_ptr + offs_b[:, None] * sgb + offs_o[None, :] * sgo + p * sgp,
                       mask=(offs_b[:, None] < B) & (offs_o[None, :] < O), other=0.0)
        weight = tl.load(w_ptr + p * swp + offs_o[:, None] * swo + k[None, :] * swk,
                         mask=(offs_o[:, None] < O) & k_ok[None, :], other=0.0)
        if SIGN:
            weight = tl.where(weight > 0, 1.0, tl.where(weight < 0, -1.0, 0.0)).to(grad.dtype)
        acc = tl.dot(grad, weight, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def _lc_grad_input_kernel(
    g_ptr, w_ptr, gx_ptr,
    B, C, H, W, O, H_OUT, W_OUT,
    sgb, sgo, sgp, swp, swo, swk,
    KERNEL: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, SIGN: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_C: tl.constexpr,
):
    pixel = tl.program_id(0)
    hx = pixel // W
    wx = pixel % W
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_c = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    acc = tl.zeros((BLOCK_B, BLOCK_C), dtype=tl.float32)
    # only kernel rows i with (hx + PAD - i) % STRIDE == 0 put input row hx in some window: start at that residue
    # and step by STRIDE (for a 9x9 stride-4 layer, 3 of 9 rows; likewise for columns)
    for i in range((hx + PAD) % STRIDE, KERNEL, STRIDE):
        r_num = hx + PAD - i                 # = r * STRIDE for the output row r whose window holds hx at row i
        r = r_num // STRIDE
        row_ok = (r_num >= 0) & (r < H_OUT)
        for j in range((wx + PAD) % STRIDE, KERNEL, STRIDE):
            c_num = wx + PAD - j
            c = c_num // STRIDE
            if row_ok & (c_num >= 0) & (c < W_OUT):
                acc = _add_window(acc, g_ptr, w_ptr, r * W_OUT + c, offs_b, (i * KERNEL + j) * C + offs_c,
                                  offs_c < C, B, O, sgb, sgo, sgp, swp, swo, swk, SIGN, INPUT_PRECISION, BLOCK_O)
    # grad_x is contiguous (B, C, H, W)
    tl.store(gx_ptr + offs_b[:, None] * (C * H * W) + offs_c[None, :] * (H * W) + pixel,
             acc.to(gx_ptr.dtype.element_ty), mask=(offs_b[:, None] < B) & (offs_c[None, :] < C))


_GX_CONFIGS = configs(("BLOCK_B", "BLOCK_O", "BLOCK_C"), [(32, 32, 16), (64, 32, 16), (64, 64, 32), (128, 64, 64)])
_lc_grad_input, _GX_FIXED = autotuned(_lc_grad_input_kernel, _GX_CONFIGS, ["B", "O", "C"])


def lc_grad_input(grad_out, weight, in_height, in_width, kernel, stride, padding, sign_weight=False):
    batch, out_ch, h_out, w_out = grad_out.shape
    positions, _, k_total = weight.shape
    channels = k_total // (kernel * kernel)
    grad_flat = grad_out.reshape(batch, out_ch, positions)
    grad_x = torch.empty(batch, channels, in_height, in_width, device=grad_out.device, dtype=grad_out.dtype)

    def grid(meta):
        return (in_height * in_width, triton.cdiv(batch, meta["BLOCK_B"]), triton.cdiv(channels, meta["BLOCK_C"]))

    _lc_grad_input[grid](
        grad_flat, weight, grad_x,
        batch, channels, in_height, in_width, out_ch, h_out, w_out,
        *grad_flat.stride(), *weight.stride(),
        KERNEL=kernel, STRIDE=stride, PAD=padding, SIGN=sign_weight, INPUT_PRECISION=_precision(),
        **_GX_FIXED,
    )
    return grad_x


def lc_grad_input_sign(grad_out, weight, in_height, in_width, kernel, stride, padding):
    """lc_grad_input with sign(weight) taken inside the kernel (sign symmetry reads W itself, never a copy)."""
    return lc_grad_input(grad_out, weight, in_height, in_width, kernel, stride, padding, sign_weight=True)


# ---- input gradient, one stride cell per program ---------------------------------------------------------------

@triton.jit
def _lc_grad_input_cell_kernel(
    g_ptr, w_ptr, gx_ptr,
    B, C, H, W, O, H_OUT, W_OUT, CELL_H0, CELL_W0, CELLS_W,
    sgb, sgo, sgp, swp, swo, swk,
    KERNEL: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, WINDOWS: tl.constexpr, SIGN: tl.constexpr,
    INPUT_PRECISION: tl.constexpr,
    BLOCK_B: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_N: tl.constexpr,
):
    # The cell (qh, qw) holds the STRIDE x STRIDE input pixels whose padded coordinates (h + PAD, w + PAD) lie in
    # [qh * STRIDE, qh * STRIDE + STRIDE) x [qw * STRIDE, ...): windows start on multiples of STRIDE, so the
    # windows covering any pixel of the cell are among the WINDOWS^2 with r in (qh - WINDOWS, qh] and
    # c in (qw - WINDOWS, qw], WINDOWS = ceil(KERNEL / STRIDE). Each is one dot over the whole cell: columns
    # n = (dh * STRIDE + dw) * C + ch.
    cell = tl.program_id(0)
    qh = CELL_H0 + cell // CELLS_W
    qw = CELL_W0 + cell % CELLS_W
    offs_b = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    offs_n = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    ch = offs_n % C
    dw = (offs_n // C) % STRIDE
    dh = offs_n // (C * STRIDE)
    u = qh * STRIDE + dh                     # padded input row and column of each column's pixel
    v = qw * STRIDE + dw
    h = u - PAD
    w = v - PAD
    pixel_ok = (offs_n < STRIDE * STRIDE * C) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    acc = tl.zeros((BLOCK_B, BLOCK_N), dtype=tl.float32)
    for tr in range(0, WINDOWS):
        r = qh - tr
        i = u - r * STRIDE                   # kernel row of each pixel in window row r (>= 0; < KERNEL if inside)
        if (r >= 0) & (r < H_OUT):
            for tc in range(0, WINDOWS):
                c = qw - tc
                j = v - c * STRIDE
                if (c >= 0) & (c < W_OUT):
                    # (dw, ch) runs of the columns are contiguous in W's K axis
                    acc = _add_window(acc, g_ptr, w_ptr, r * W_OUT + c, offs_b, (i * KERNEL + j) * C + ch,
                                      pixel_ok & (i < KERNEL) & (j < KERNEL), B, O, sgb, sgo, sgp, swp, swo, swk,
                                      SIGN, INPUT_PRECISION, BLOCK_O)
    # grad_x is contiguous (B, C, H, W); every pixel lies in exactly one cell, so each is written once
    tl.store(gx_ptr + offs_b[:, None] * (C * H * W) + (ch * (H * W) + h * W + w)[None, :],
             acc.to(gx_ptr.dtype.element_ty), mask=(offs_b[:, None] < B) & pixel_ok[None, :])


_GX_CELL_CONFIGS = configs(("BLOCK_B", "BLOCK_O", "BLOCK_N"),
                           [(32, 32, 16), (64, 32, 32), (64, 64, 64), (128, 64, 64), (64, 32, 128)])
_lc_grad_input_cell, _GX_CELL_FIXED = autotuned(_lc_grad_input_cell_kernel, _GX_CELL_CONFIGS, ["B", "O", "C"])


def lc_grad_input_cells(grad_out, weight, in_height, in_width, kernel, stride, padding, sign_weight=False):
    """lc_grad_input with one program per stride cell (stride x stride input pixels) instead of per pixel: each
    covering window's grad_out tile is read once per cell, not once per pixel, and the dot's columns are the
    cell's stride^2 * C entries, so 1-3 input channels are not padded to a 16-wide channel block on their own
    (at the 9x9 stride-4 RGB layer: 9x fewer grad_out tile reads, 48 of 64 columns used against 3 of 16)."""
    batch, out_ch, h_out, w_out = grad_out.shape
    positions, _, k_total = weight.shape
    channels = k_total // (kernel * kernel)
    grad_flat = grad_out.reshape(batch, out_ch, positions)
    grad_x = torch.empty(batch, channels, in_height, in_width, device=grad_out.device, dtype=grad_out.dtype)
    cell_h0, cell_w0 = padding // stride, padding // stride
    cells_h = (padding + in_height - 1) // stride - cell_h0 + 1
    cells_w = (padding + in_width - 1) // stride - cell_w0 + 1
    columns = stride * stride * channels

    def grid(meta):
        return (cells_h * cells_w, triton.cdiv(batch, meta["BLOCK_B"]), triton.cdiv(columns, meta["BLOCK_N"]))

    _lc_grad_input_cell[grid](
        grad_flat, weight, grad_x,
        batch, channels, in_height, in_width, out_ch, h_out, w_out, cell_h0, cell_w0, cells_w,
        *grad_flat.stride(), *weight.stride(),
        KERNEL=kernel, STRIDE=stride, PAD=padding, WINDOWS=triton.cdiv(kernel, stride), SIGN=sign_weight,
        INPUT_PRECISION=_precision(), **_GX_CELL_FIXED,
    )
    return grad_x


def lc_grad_input_cells_sign(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return lc_grad_input_cells(grad_out, weight, in_height, in_width, kernel, stride, padding, sign_weight=True)


# ---- grad_out read channels-last ---------------------------------------------------------------------------

def _out_channels_fastest(grad_out):
    """grad_out (B, O, H_out, W_out) with the out-channels fastest in memory; reshaped to (B, O, P) it stays a
    view whose out-channel stride is 1."""
    return grad_out.contiguous(memory_format=torch.channels_last)


def lc_grad_weight_cl(grad_out, x, kernel, stride, padding):
    return lc_grad_weight(_out_channels_fastest(grad_out), x, kernel, stride, padding)


def lc_grad_input_cl(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return lc_grad_input(_out_channels_fastest(grad_out), weight, in_height, in_width, kernel, stride, padding)


def lc_grad_input_sign_cl(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return lc_grad_input(_out_channels_fastest(grad_out), weight, in_height, in_width, kernel, stride, padding,
                         sign_weight=True)


def lc_grad_input_cells_cl(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return lc_grad_input_cells(_out_channels_fastest(grad_out), weight, in_height, in_width, kernel, stride, padding)


def lc_grad_input_cells_sign_cl(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return lc_grad_input_cells(_out_channels_fastest(grad_out), weight, in_height, in_width, kernel, stride,
                               padding, sign_weight=True)
