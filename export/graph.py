"""ONNX graph helpers: metadata, output shapes, and the score/post-processing subgraph.

The "score subgraph" is everything after the network's last convolutions: softmax, entropies,
inconsistency, level means, box decoding and TopK. FP16 conversion and INT8 quantisation leave it
in float32 (INT8 would compress the confidences and flatten the score). It is found structurally:
the nodes that descend from a convolution but feed none. The prediction convolutions (whose output
only the post-processing reads) are kept in float too, so the logits the score is computed from are
never quantised.
"""

from __future__ import annotations

from collections import defaultdict

import onnx

CONV_OPS = ("Conv", "ConvTranspose")


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every node a unique name (quantisation / FP16 block lists address nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)
    return model


def score_subgraph_nodes(model: onnx.ModelProto, include_heads: bool = True) -> list[str]:
    """Names of the post-network nodes (descendants of a Conv that are not ancestors of one), and
    with ``include_heads`` the prediction convolutions that feed only those."""
    nodes = list(model.graph.node)
    producer = {}
    consumers: dict[str, list[int]] = defaultdict(list)
    for i, node in enumerate(nodes):
        for out in node.output:
            producer[out] = i
        for inp in node.input:
            consumers[inp].append(i)
    convs = [i for i, n in enumerate(nodes) if n.op_type in CONV_OPS]

    def walk(starts, step):
        seen, stack = set(), list(starts)
        while stack:
            i = stack.pop()
            if i in seen:
                continue
            seen.add(i)
            stack.extend(step(i))
        return seen

    feeds_conv = walk(convs, lambda i: [producer[x] for x in nodes[i].input if x in producer])
    after_conv = walk(convs, lambda i: [c for o in nodes[i].output for c in consumers.get(o, [])])
    post = after_conv - feeds_conv
    if include_heads:
        # the prediction convolutions: every consumer of their output is post-processing, so their
        # logits / box deltas are what the score reads; quantising them would coarsen the confidences
        for i in convs:
            users = [c for o in nodes[i].output for c in consumers.get(o, [])]
            if users and all(u in post for u in users):
                post.add(i)
    return [nodes[i].name for i in sorted(post)]


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> onnx.ModelProto:
    """Replace or add ``metadata_props`` entries (values must be strings)."""
    existing = {p.key: p for p in model.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
    return model


def get_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def set_output_shapes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], batch_name: str = "batch") -> None:
    """Fix the declared output shapes: dim 0 symbolic ``batch``, the others the given sizes."""
    for out in model.graph.output:
        if out.name not in shapes:
            continue
        dims = out.type.tensor_type.shape.dim
        target = shapes[out.name]
        del dims[:]
        for axis, size in enumerate(target):
            d = dims.add()
            if axis == 0:
                d.dim_param = batch_name
            else:
                d.dim_value = int(size)
