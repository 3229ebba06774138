"""The bounds on the work a graph spec or a config file can cause, checked before the work is done.

A spec comes from a file a user may not have written; it is data, never code (YAML safe loading, an
expression language of arithmetic only, no includes or paths), and everything it can make tn_peft do
is bounded here. Each limit, when hit, is one SpecError naming the key and the limit's name.
"""

#: largest graph or config file read, in bytes (the catalog's largest graph is about 2 KB)
MAX_SPEC_BYTES = 1 << 20
#: deepest nesting of mappings and lists in a spec (the catalog's deepest is 4)
MAX_SPEC_DEPTH = 32
#: most mappings, lists and scalars in a spec, aliases counted each time they are used (YAML "billion laughs")
MAX_SPEC_ITEMS = 100_000
#: widest integer an expression may produce, in bits (sizes are far below 2^62; 10 ** 10 ** 10 never starts)
MAX_INT_BITS = 64
#: most iterations one ``for:`` clause may expand to (nodes, legs or sizes)
MAX_LOOP_ITERATIONS = 10_000
#: most nodes a network may have after expansion
MAX_NODES = 4_096
#: the most elements one node's tensor may have (2^31: 8 GiB in float32); see :mod:`tn_peft.graph.sizes`
MAX_NODE_ELEMENTS = 2**31


#: longest module-name pattern (target_modules / exclude_modules regex, modules_to_save, layer_graph_args keys,
#: layers_pattern) a config may hold
MAX_PATTERN_CHARS = 1_000
#: most unbounded repeats (``*``, ``+``, ``{n,}``) in a pattern as matched, tn_peft's own wrapper included: each
#: one multiplies a failing match's backtracking by the name's length (6 ``.*`` take seconds on one 96-character
#: name); none may sit inside another or around an alternation (exponential), see :mod:`tn_peft.patterns`
MAX_PATTERN_REPEATS = 4

__all__ = ["MAX_INT_BITS", "MAX_LOOP_ITERATIONS", "MAX_NODES", "MAX_NODE_ELEMENTS", "MAX_PATTERN_CHARS",
           "MAX_PATTERN_REPEATS", "MAX_SPEC_BYTES", "MAX_SPEC_DEPTH", "MAX_SPEC_ITEMS"]
