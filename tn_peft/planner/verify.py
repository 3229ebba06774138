"""The gate every generated program passes before it is compiled: its AST must be one the emitter can write.

The emitter (:mod:`.emit`, :mod:`.lower`) writes source only from names it makes itself (operand
identifiers, ``t0``, ``u1``, ...), numbers, and a fixed table of torch calls; user strings (leg and node
names) reach comments only, escaped. This check holds that promise even if a later change to the
emitter breaks it: :func:`verify_source` parses the source and accepts exactly this grammar ::

    def program(<params>):          # plain positional parameters, nothing else
        <name> = <expr>             # one Name target
        del <name>, ...
        return <expr>               # last statement

    <expr> := <param or earlier local> | int | float | bool | None | -<number> | (<expr>, ...)
            | <expr> * <expr> | <expr> - <expr> | <expr>[<slices and None>]
            | torch.matmul(<expr>, <expr>) | F.linear(<expr>, <expr>)
            | apply_circuit(<name>, <expr>, transpose=<bool>)
            | <expr>.reshape(...) | .permute(...) | .sum(...) | .t() | .transpose(...) | .contiguous()

Anything else raises :class:`~tn_peft.errors.UnsafeProgramError` and nothing is compiled or run.
"""

from __future__ import annotations

import ast
import math

from ..errors import UnsafeProgramError

#: the functions a program may call: ``module.function`` on the compiled namespace's globals
FUNCTIONS = {("torch", "matmul"), ("F", "linear")}
#: tensor methods a program may call
METHODS = {"reshape", "permute", "sum", "t", "transpose", "contiguous"}
#: the namespace's globals (:data:`.runtime.namespace.NAMESPACE`); never a parameter or a local
GLOBALS = {"torch", "F", "apply_circuit"}


def verify_source(source: str) -> ast.Module:
    """Parse ``source`` and check it against the program grammar; return its AST.

    Raises:
        UnsafeProgramError: the source is not a program the emitter writes (names the first offence).
    """
    try:
        tree = ast.parse(source, mode="exec")
    except (SyntaxError, ValueError) as exc:
        raise UnsafeProgramError(f"generated source does not parse ({exc}); nothing was run") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        _refuse(tree, "the module must hold exactly one function definition")
    function = tree.body[0]
    _check_signature(function)
    defined = {arg.arg for arg in function.args.args}
    if not function.body or not isinstance(function.body[-1], ast.Return):
        _refuse(function, "the function must end with a return")
    for statement in function.body:
        _check_statement(statement, defined)
    return tree


def _refuse(node: ast.AST, why: str) -> None:
    line = getattr(node, "lineno", "?")
    raise UnsafeProgramError(f"generated source line {line}: {why}; nothing was run. This is a bug in tn_peft's "
                             "emitter: please report it with the graph that produced it")


def _check_signature(function: ast.FunctionDef) -> None:
    args = function.args
    if function.name != "program" or function.decorator_list or function.returns is not None:
        _refuse(function, "the function must be a plain 'def program(...)'")
    if args.posonlyargs or args.vararg or args.kwonlyargs or args.kw_defaults or args.kwarg or args.defaults:
        _refuse(function, "parameters must be plain positional names")
    if getattr(function, "type_params", None):
        _refuse(function, "parameters must be plain positional names")
    for arg in args.args:
        if arg.annotation is not None:
            _refuse(arg, "parameters take no annotations")
        _check_new_name(arg, arg.arg, allow_x=True)


def _check_new_name(node: ast.AST, name: str, allow_x: bool = False) -> None:
    if name in GLOBALS or name.startswith("__") or (name == "x" and not allow_x):
        _refuse(node, f"the name {name!r} may not be bound")


def _check_statement(statement: ast.stmt, defined: set[str]) -> None:
    if isinstance(statement, ast.Assign):
        if len(statement.targets) != 1 or not isinstance(statement.targets[0], ast.Name):
            _refuse(statement, "an assignment must bind exactly one name")
        _check_expr(statement.value, defined)
        target = statement.targets[0].id
        _check_new_name(statement, target)
        defined.add(target)
    elif isinstance(statement, ast.Delete):
        for target in statement.targets:
            if not isinstance(target, ast.Name) or target.id not in defined:
                _refuse(statement, "del may only drop names the program bound")
    elif isinstance(statement, ast.Return):
        if statement.value is None:
            _refuse(statement, "the return must give a value")
        _check_expr(statement.value, defined)
    else:
        _refuse(statement, f"the statement {type(statement).__name__} is not allowed")


def _check_expr(node: ast.expr, defined: set[str]) -> None:
    if isinstance(node, ast.Name):
        if not isinstance(node.ctx, ast.Load) or node.id not in defined:
            _refuse(node, f"the name {node.id!r} is not a parameter or a value the program computed")
    elif isinstance(node, ast.Constant):
        value = node.value
        if not (value is None or isinstance(value, (bool, int, float))):
            _refuse(node, f"a constant of type {type(value).__name__} is not allowed")
        if isinstance(value, float) and not math.isfinite(value):
            _refuse(node, "a non-finite constant is not allowed")
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, ast.USub) or not isinstance(node.operand, ast.Constant):
            _refuse(node, "only a negative number may take a unary operator")
        _check_expr(node.operand, defined)
    elif isinstance(node, ast.BinOp):
        if not isinstance(node.op, (ast.Mult, ast.Sub)):
            _refuse(node, f"the operator {type(node.op).__name__} is not allowed")
        _check_expr(node.left, defined)
        _check_expr(node.right, defined)
    elif isinstance(node, ast.Tuple):
        if not isinstance(node.ctx, ast.Load):
            _refuse(node, "tuples are values only")
        for element in node.elts:
            _check_expr(element, defined)
    elif isinstance(node, ast.Subscript):
        _check_expr(node.value, defined)
        index = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        for item in index:
            full = isinstance(item, ast.Slice) and item.lower is None and item.upper is None and item.step is None
            if not (full or (isinstance(item, ast.Constant) and item.value is None)):
                _refuse(node, "an index may only hold ':' and None")
    elif isinstance(node, ast.Call):
        _check_call(node, defined)
    else:
        _refuse(node, f"the expression {type(node).__name__} is not allowed")


def _check_call(node: ast.Call, defined: set[str]) -> None:
    func = node.func
    keywords = {kw.arg: kw.value for kw in node.keywords}
    if isinstance(func, ast.Name) and func.id == "apply_circuit":
        transpose = keywords.pop("transpose", None)
        if (len(node.args) != 2 or not isinstance(node.args[0], ast.Name) or transpose is None
                or not isinstance(transpose, ast.Constant) or not isinstance(transpose.value, bool)):
            _refuse(node, "apply_circuit takes (node, state, transpose=<bool>)")
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in GLOBALS:
        if (func.value.id, func.attr) not in FUNCTIONS:
            _refuse(node, f"{func.value.id}.{func.attr} is not a function programs may call")
    elif isinstance(func, ast.Attribute):
        if func.attr not in METHODS:
            _refuse(node, f"the method {func.attr!r} is not one programs may call")
        _check_expr(func.value, defined)
    else:
        _refuse(node, "only torch.matmul, F.linear, apply_circuit and tensor layout methods may be called")
    if keywords or any(kw.arg is None for kw in node.keywords):
        _refuse(node, "keyword arguments are not allowed here")
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            _refuse(node, "starred arguments are not allowed")
        _check_expr(arg, defined)
