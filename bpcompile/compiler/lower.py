"""Lowering: give every custom-op node a concrete implementation.

Custom-op nodes become direct calls of the chosen implementation function
(no dispatcher hop per call). On CPU that is the plain-PyTorch 'reference'.
On CUDA an op with Triton kernels (the locally connected ops) gets 'auto': per
shape, whichever of its Triton kernel (for the backward ops also the kernel's
variant reading grad_out channels-last, for the input gradient also the kernel
working per stride cell, in both layouts) and its reference ran fastest when
timed at the first call (compiler/timed_choice.py; no one formulation wins at
every LC shape); $BPCOMPILE_IMPL=triton or =reference fixes one side. A
sign-symmetry input gradient of an LC layer becomes one kernel that takes
sign(W) on the fly (under 'auto', timed against the reference of sign(W)). The
choice is recorded in node.meta for `inspect`. `prefer` overrides the order
(the tests run the Triton kernels on CPU through the interpreter).

With $BPCOMPILE_FUSE_FEEDBACK=1 (and Triton preferred), a dense layer's input
gradient (any weight source, sign(W) included) or DFA's dense projection that
feeds only an activation's backward becomes one Triton kernel applying the
derivative before its store (kernels/feedback.py). With $BPCOMPILE_FUSE_TARGETS=1,
difference target propagation's target through a dense inverse, h + g(t) - g(h')
with g(x) = f(x V + c), becomes one Triton kernel (kernels/target.py). Both are
off by default until benchmarks/feedback.py and benchmarks/target.py have
measured them on a GPU."""

import os
import warnings
from typing import Optional, Sequence

import torch
from torch.fx import GraphModule

from ..errors import BpcompileError
from ..nn.ops import FAMILIES, WEIGHT_ARG, implementations
from ..nn.ops.locally_connected import lc_grad_input_reference
from .program import META_IMPL, META_OP, META_REWRITE
from .timed_choice import FastestOf

_TRITON_LOADED = False
_SIGN_GRAD_INPUT: dict = {}        # 'auto': the timed choice for the sign-fused LC input gradient


def load_triton_implementations() -> bool:
    """Register the Triton kernels as 'triton' implementations of their ops and the timed choice between each
    kernel and its reference as 'auto' (once; False without triton)."""
    global _TRITON_LOADED
    if _TRITON_LOADED:
        return True
    try:
        from ..kernels import lc
    except ImportError:
        return False
    family = FAMILIES["locally_connected"]
    # 'auto' times these per shape against the reference: the kernel ("triton", also the op's 'triton'
    # implementation), for the backward also its variant reading grad_out channels-last (coalesced tiles for one
    # more copy), for the input gradient also the kernel per stride cell (stride x stride input pixels)
    kernels = {
        family.forward: {"triton": lc.lc_forward},
        family.grad_input: {"triton": lc.lc_grad_input, "triton, grad_out channels-last": lc.lc_grad_input_cl,
                            "triton, stride cells": lc.lc_grad_input_cells,
                            "triton, stride cells, grad_out channels-last": lc.lc_grad_input_cells_cl},
        family.grad_weight: {"triton": lc.lc_grad_weight, "triton, grad_out channels-last": lc.lc_grad_weight_cl},
    }
    for op, candidates in kernels.items():
        impls = family.implementations[op]
        impls["triton"] = candidates["triton"]
        impls["auto"] = FastestOf(str(op), {**candidates, "reference": impls["reference"]})
    _SIGN_GRAD_INPUT["auto"] = FastestOf("locally_connected_grad_input_sign", {
        "triton": lc.lc_grad_input_sign, "triton, grad_out channels-last": lc.lc_grad_input_sign_cl,
        "triton, stride cells": lc.lc_grad_input_cells_sign,
        "triton, stride cells, grad_out channels-last": lc.lc_grad_input_cells_sign_cl,
        "reference": _sign_grad_input_reference})
    _TRITON_LOADED = True
    return True


def preference(device: torch.device) -> tuple[str, ...]:
    """On CUDA the timed choice between Triton and the reference ('auto', the default); $BPCOMPILE_IMPL=triton
    takes the Triton kernels at every shape (a missing triton is then an error), =reference the reference ops
    (for comparisons). The reference alone on the CPU."""
    chosen = os.environ.get("BPCOMPILE_IMPL", "auto")
    if device.type != "cuda" or chosen == "reference":
        return ("reference",)
    return ("triton", "reference") if chosen == "triton" else ("auto", "triton", "reference")


def lower(graph: GraphModule, device: torch.device, prefer: Optional[Sequence[str]] = None) -> None:
    order = tuple(prefer or preference(device))
    wants_kernels = "triton" in order or "auto" in order
    if wants_kernels and not load_triton_implementations():
        _triton_missing(device, order)
    if wants_kernels and _TRITON_LOADED:
        _fuse_sign_into_lc_grad_input(graph, timed=order[0] == "auto")
        if os.environ.get("BPCOMPILE_FUSE_FEEDBACK") == "1":
            _fuse_feedback_products(graph)
        if os.environ.get("BPCOMPILE_FUSE_TARGETS") == "1":
            _fuse_difference_targets(graph)
    for node in graph.graph.nodes:
        if node.op != "call_function":
            continue
        impls = implementations(node.target)
        if not impls:
            continue
        choice = next(name for name in order if name in impls)
        node.meta.setdefault(META_OP, str(node.target))
        node.meta[META_IMPL] = choice
        node.target = impls[choice]
    graph.graph.eliminate_dead_code()
    graph.recompile()


def _triton_missing(device: torch.device, order: tuple) -> None:
    """Triton was asked for but cannot be imported: an error if asked for explicitly, else a loud warning on
    CUDA (the LC ops then run their plain-PyTorch reference, much slower), never a silent fallback."""
    if order[0] == "triton" and device.type == "cuda" and os.environ.get("BPCOMPILE_IMPL") == "triton":
        raise BpcompileError("BPCOMPILE_IMPL=triton, but triton cannot be imported on this machine: install the "
                             "triton that matches this torch, or unset BPCOMPILE_IMPL.")
    if device.type == "cuda" and not _WARNED:
        _WARNED.append(True)
        warnings.warn("triton cannot be imported: the locally connected layers run their plain-PyTorch reference "
                      "ops on the GPU (correct, much slower). Install the triton that matches this torch.",
                      RuntimeWarning, stacklevel=3)


_WARNED: list = []


def _sign_grad_input_reference(grad_out, weight, in_height, in_width, kernel, stride, padding):
    return lc_grad_input_reference(grad_out, torch.sign(weight), in_height, in_width, kernel, stride, padding)


def _fuse_sign_into_lc_grad_input(graph: GraphModule, timed: bool = False) -> None:
    """lc_grad_input(g, sign_feedback(W, None, 1.0), ...) -> lc_grad_input_sign(g, W, ...): one kernel, no sign copy.
    `timed`: the kernel or the reference input gradient of sign(W), whichever is faster at the node's shapes."""
    from ..kernels import lc

    grad_input = FAMILIES["locally_connected"].grad_input
    for node in graph.graph.nodes:
        weight = node.args[WEIGHT_ARG] if node.op == "call_function" and node.target is grad_input else None
        if not (isinstance(weight, torch.fx.Node) and weight.target is torch.ops.bpcompile.sign_feedback.default):
            continue
        source, magnitude, scale = weight.args
        if magnitude is not None:
            continue
        args = list(node.args)
        args[WEIGHT_ARG] = source
        node.args = tuple(args)
        node.meta[META_OP] = str(node.target)
        node.meta[META_IMPL] = "auto (sign fused)" if timed else "triton (sign fused)"
        node.meta[META_REWRITE] = node.meta.get(META_REWRITE, "") + "; sign(W) taken inside the Triton kernel"
        node.target = _SIGN_GRAD_INPUT["auto"] if timed else lc.lc_grad_input_sign
        if scale != 1.0:     # the input gradient is linear in the weight: scale the kernel's result instead
            with graph.graph.inserting_after(node):
                scaled = graph.graph.call_function(torch.ops.aten.mul.Tensor, (node, float(scale)))
            node.replace_all_uses_with(scaled, delete_user_cb=lambda user: user is not scaled)


# the activation backward ops that follow a dense layer's input gradient, and the kernel's name for each
_ACTIVATION_BACKWARDS = {
    torch.ops.aten.tanh_backward.default: "tanh",
    torch.ops.aten.sigmoid_backward.default: "sigmoid",
    torch.ops.aten.threshold_backward.default: "relu",
}


def _fuse_feedback_products(graph: GraphModule) -> None:
    """act_backward(dense_grad_input(g, B), saved) or act_backward(direct_feedback(e, B, [F]), saved) ->
    feedback_product(g, B, saved, act): the product and f' in one kernel; sign_feedback(W, None, s) as B is
    taken as sign(W) * s inside it."""
    from ..kernels import feedback

    grad_input = FAMILIES["dense"].grad_input
    for node in list(graph.graph.nodes):
        activation = _ACTIVATION_BACKWARDS.get(node.target) if node.op == "call_function" else None
        if activation is None or (activation == "relu" and node.args[2] != 0):
            continue
        product, saved = node.args[0], node.args[1]
        if not isinstance(product, torch.fx.Node) or len(product.users) != 1 or product.op != "call_function":
            continue
        if product.target is grad_input:
            g, b = product.args
        elif product.target is torch.ops.bpcompile.direct_feedback.default and len(product.args[2]) == 1:
            g, b = product.args[0], product.args[1]
        else:
            continue
        sign, scale = False, 1.0
        if isinstance(b, torch.fx.Node) and b.target is torch.ops.bpcompile.sign_feedback.default and b.args[1] is None:
            b, sign, scale = b.args[0], True, float(b.args[2])
        with graph.graph.inserting_before(node):
            fused = graph.graph.call_function(feedback.feedback_product, (g, b, saved, activation, sign, scale))
        for key in ("bpcompile_layer", "bpcompile_role", META_REWRITE):
            if key in product.meta:
                fused.meta[key] = product.meta[key]
        fused.meta[META_OP] = f"{product.target} + {node.target}"
        fused.meta[META_IMPL] = "triton (feedback fused)"
        fused.meta[META_REWRITE] = fused.meta.get(META_REWRITE, "") + f"; {activation}'s derivative applied in the kernel"
        node.replace_all_uses_with(fused)
        graph.graph.erase_node(node)
        graph.graph.erase_node(product)


# the activations an inverse g(x) = f(x V + c) ends in, and the kernel's name for each (no node: identity)
_INVERSE_ACTIVATIONS = {
    torch.ops.aten.tanh.default: "tanh",
    torch.ops.aten.sigmoid.default: "sigmoid",
    torch.ops.aten.relu.default: "relu",
}


def _dense_inverse(node):
    """node = f(dense_grad_input(x, V) + c), each part used once -> (x, V, c, f, [its nodes]); else None."""
    if not isinstance(node, torch.fx.Node) or node.op != "call_function":
        return None
    nodes, activation = [], "identity"
    if node.target in _INVERSE_ACTIVATIONS:
        activation = _INVERSE_ACTIVATIONS[node.target]
        nodes.append(node)
        node = node.args[0]
    if not (isinstance(node, torch.fx.Node) and node.target is torch.ops.aten.add.Tensor and len(node.args) == 2):
        return None
    product, bias = node.args
    nodes.append(node)
    if not (isinstance(product, torch.fx.Node) and product.target is FAMILIES["dense"].grad_input
            and isinstance(bias, torch.fx.Node)):
        return None
    nodes.append(product)
    if any(len(n.users) != 1 for n in nodes):
        return None
    x, weight = product.args
    return x, weight, bias, activation, nodes


def _difference_parts(node):
    """(h_below, added inverse, subtracted inverse, [the two outer nodes]) of the two forms the TP rules trace:
    (h_below + g(t)) - g(h) (DTP's propagation) and (h_below - g(h)) + g(t) (SDTP's label target); else None."""
    aten = torch.ops.aten
    if node.op != "call_function" or node.target not in (aten.sub.Tensor, aten.add.Tensor) or len(node.args) != 2:
        return None
    inner, outer_operand = node.args
    other = aten.add.Tensor if node.target is aten.sub.Tensor else aten.sub.Tensor
    if not (isinstance(inner, torch.fx.Node) and inner.target is other and len(inner.args) == 2
            and len(inner.users) == 1):
        return None
    below, inner_operand = inner.args
    outer, inner_inverse = _dense_inverse(outer_operand), _dense_inverse(inner_operand)
    if outer is None or inner_inverse is None:
        return None
    added, subtracted = (inner_inverse, outer) if node.target is aten.sub.Tensor else (outer, inner_inverse)
    return below, added, subtracted, [node, inner]


def _fuse_difference_targets(graph: GraphModule) -> None:
    """h_below + f(t V + c) - f(h V + c), V a dense inverse's weight -> difference_target(h_below, t, h, V, c, f)."""
    from ..kernels import target

    for node in list(graph.graph.nodes):
        parts = _difference_parts(node)
        if parts is None:
            continue
        below, added, subtracted, outer_nodes = parts
        t, weight, bias, activation, added_nodes = added
        h, *same_map, subtracted_nodes = subtracted
        if same_map != [weight, bias, activation]:        # both inverse passes must be the same g
            continue
        with graph.graph.inserting_before(node):
            fused = graph.graph.call_function(target.difference_target, (below, t, h, weight, bias, activation))
        fused.meta.update({k: v for k, v in node.meta.items() if k not in (META_OP, META_IMPL)})
        fused.meta[META_OP] = "difference target: h + g(t) - g(h'), g = f(x V + c)"
        fused.meta[META_IMPL] = "triton (target fused)"
        fused.meta[META_REWRITE] = fused.meta.get(META_REWRITE, "") + f"; both inverse passes and {activation} in one kernel"
        node.replace_all_uses_with(fused)
        for dead in outer_nodes + added_nodes + subtracted_nodes:     # users before what they use
            graph.graph.erase_node(dead)
