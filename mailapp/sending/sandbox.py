"""The template sandbox: Jinja's immutable sandbox made stricter, with every render held to the
budget of limits.py. templating.py builds its environments from it and checks templates against it."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NoReturn

from jinja2 import ChainableUndefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.environment import Template
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg

from mailapp.sending import limits

# Jinja's own globals that a layout may use. lipsum, cycler and joiner are left out: they add nothing to
# an email and are the usual first step of template-injection payloads.
ALLOWED_GLOBALS = ("range", "dict", "namespace")

# str methods whose first argument is the width of the result.
_PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill"})


class _BudgetedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with the spots where a template builds text or collections routed through
    the render budget: `~`, list/tuple/dict literals, printed values and the output buffers of macros
    and blocks. (Loops are wrapped in `StrictSandbox._parse`, operators and calls by the sandbox.)"""

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.output_buffer()")

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")

    def visit_List(self, node: nodes.List, frame: Frame) -> None:
        self.write("environment.checked_value(")
        super().visit_List(node, frame)
        self.write(")")

    def visit_Dict(self, node: nodes.Dict, frame: Frame) -> None:
        self.write("environment.checked_value(")
        super().visit_Dict(node, frame)
        self.write(")")

    def visit_Tuple(self, node: nodes.Tuple, frame: Frame) -> None:
        if node.ctx != "load":
            super().visit_Tuple(node, frame)
            return
        self.write("environment.checked_value(")
        super().visit_Tuple(node, frame)
        self.write(")")

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        super()._output_child_pre(node, frame, finalize)
        self.write("environment.printable(")

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        self.write(")")
        super()._output_child_post(node, frame, finalize)


class _BudgetedTemplate(Template):
    """A template whose every render runs on a fresh budget (see limits.py), with its output counted."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        budget, token = limits.start_render()
        try:
            context = self.new_context(dict(*args, **kwargs))
            return _bounded_output(self.root_render_func(context), budget)
        except RecursionError as error:
            raise limits.RenderLimitExceeded("the template is nested too deeply to render.") from error
        except Exception:  # Jinja's own handler re-raises with template line numbers
            self.environment.handle_exception()
        finally:
            limits.end_render(token)


def _bounded_output(chunks: Iterable[str], budget: limits.RenderBudget) -> str:
    # Many small chunks are joined in blocks as they come: as one list of strings they can take ten
    # times the memory of the text they hold.
    blocks: list[str] = []
    pending: list[str] = []
    length = 0
    limit = budget.limits.max_output
    for chunk in chunks:
        length += len(chunk)
        if length > limit:
            budget.check_length(length, "the rendered output")
        pending.append(chunk)
        if len(pending) >= 1024:
            blocks.append("".join(pending))
            pending.clear()
    if not blocks:
        return "".join(pending)
    blocks.append("".join(pending))
    return "".join(blocks)


class StrictSandbox(ImmutableSandboxedEnvironment):
    """The sandbox, stricter than Jinja's: any underscore attribute is refused (not only those Jinja
    knows are unsafe), an unsafe access raises at once instead of rendering as an empty string (so
    `''['__cla' ~ 'ss__']`, which no static check can see, still fails validation), the context's
    lists and dicts cannot be modified (they may be shared between recipients), and every render is
    held to the limits of limits.py: each operator, filter, call and loop iteration is a step, and no
    value may grow past the output or integer-size limit."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"+", "-"})
    code_generator_class = _BudgetedCodeGenerator
    template_class = _BudgetedTemplate

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals = {name: self.globals[name] for name in ALLOWED_GLOBALS}
        self.filters = {name: _bounded_filter(name, function) for name, function in self.filters.items()}

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        # Jinja compiles `for` to a Python for loop; wrapping each iterable is the one place to count
        # (and time) iterations. EnvironmentAttribute is not reachable from template source.
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(
                nodes.EnvironmentAttribute("loop_guard"), [loop.iter], [], None, None, lineno=loop.lineno
            ).set_environment(self)
            loop.iter.node.lineno = loop.lineno
        return tree

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_"):
            return False
        return super().is_safe_attribute(obj, attr, value)

    def unsafe_undefined(self, obj: Any, attribute: str) -> NoReturn:
        raise SecurityError(f"access to attribute {attribute!r} of {type(obj).__name__!r} object is unsafe.")

    # -- the hooks the generated code calls ------------------------------------------------------------

    @staticmethod
    def loop_guard(iterable: Any) -> Iterator[Any]:
        return limits.guarded_iteration(iterable)

    @staticmethod
    def output_buffer() -> limits.BoundedBuffer:
        return limits.BoundedBuffer()

    @staticmethod
    def checked_value(value: Any) -> Any:
        return limits.current_budget().check_value(value)

    @staticmethod
    def printable(value: Any) -> Any:
        if not isinstance(value, str):
            limits.current_budget().check_value(value, "a printed value")
        return value

    @staticmethod
    def bounded_concat(join: Callable[[Iterable[Any]], str], pieces: tuple[Any, ...]) -> str:
        budget = limits.current_budget()
        budget.step()
        budget.check_length(sum(limits.size_of(piece, budget) for piece in pieces), "the joined text (~)")
        # Escaping can make the text longer still.
        return budget.check_value(join(pieces), "the joined text (~)")

    def call_binop(self, context: Context, operator_name: str, left: Any, right: Any) -> Any:
        budget = limits.current_budget()
        budget.step()
        _check_binop(budget, operator_name, left, right)
        return budget.check_value(self.binop_table[operator_name](left, right))

    def call_unop(self, context: Context, operator_name: str, arg: Any) -> Any:
        limits.current_budget().step()
        return self.unop_table[operator_name](arg)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        budget = limits.current_budget()
        budget.step()
        # Jinja hands out str.format already wrapped in its sandboxed formatter.
        method = getattr(obj, "__wrapped__", obj)
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str):
            args = _check_str_method(budget, owner, getattr(method, "__name__", ""), args, kwargs)
        elif isinstance(owner, int) and getattr(method, "__name__", "") == "to_bytes":
            for length in limits.int_args((*args, *kwargs.values())):
                budget.check_length(length, "the bytes")
        elif isinstance(obj, LoopContext) and args:
            # loop(children) in a recursive loop: its items are loop iterations too.
            args = (limits.guarded_iteration(args[0]), *args[1:])
        budget.enter_call()
        try:
            result = super().call(context, obj, *args, **kwargs)
        finally:
            budget.depth -= 1
        return budget.check_value(result, "the result of a call")


def _check_binop(budget: limits.RenderBudget, operator_name: str, left: Any, right: Any) -> None:
    """Refuse, before computing it, an operation whose result would be over the limits."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator_name == "**" and ints and right > 0:
        budget.check_int_bits(max(left.bit_length(), 1) * right)
    elif operator_name == "**" and isinstance(right, int) and abs(right) > budget.limits.max_int_bits:
        budget.check_int_bits(abs(right))
    elif operator_name == "*" and ints:
        budget.check_int_bits(left.bit_length() + right.bit_length())
    elif operator_name == "*":
        for sequence, times in ((left, right), (right, left)):
            if isinstance(sequence, str | list | tuple) and isinstance(times, int):
                budget.check_length(limits.size_of(sequence, budget) * max(times, 0), "the repeated value")
    elif operator_name == "+" and isinstance(left, str | list | tuple):
        budget.check_length(limits.size_of(left, budget) + limits.size_of(right, budget), "the joined value")
    elif operator_name == "%" and isinstance(left, str):
        limits.check_percent_format(budget, left, right)


def _check_str_method(budget: limits.RenderBudget, text: str, method: str, args: tuple[Any, ...],
                      kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str method call whose result would be over the output limit, before making it; returns
    the arguments to call it with (an iterable to join is read once, here)."""
    if method == "format":
        limits.check_brace_format(budget, text, args, kwargs)
    elif method == "format_map":
        mapping = args[0] if args and isinstance(args[0], Mapping) else {}
        limits.check_brace_format(budget, text, (), mapping)
    elif method in _PADDING_METHODS:
        width = args[0] if args else kwargs.get("width", 0)
        if isinstance(width, int):
            budget.check_length(width, f"the result of .{method}()")
    elif method == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            budget.check_length(len(text) + text.count("\t") * max(tabsize, 0), "the result of .expandtabs()")
    elif method == "replace":
        limits.check_replace(budget, text, *args[:3])
    elif method == "join" and args:
        items = list(limits.guarded_iteration(args[0]))
        limits.check_join(budget, text, items)
        return (items, *args[1:])
    else:
        for number in limits.int_args((*args, *kwargs.values())):
            budget.check_length(abs(number), f"a number passed to .{method}()")
    return args


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, charged to the render budget: its arguments checked before it runs (where it can
    build a much larger value than it was given), its result (or the items it produces lazily) after."""
    skip = 1 if _PassArg.from_obj(function) is not None else 0
    precheck = _FILTER_CHECKS.get(name)
    signature = _value_signature(function, skip) if precheck is not None else None
    what = f"the output of |{name}"

    @functools.wraps(function)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        budget = limits.current_budget()
        budget.step()
        if len(args) > skip and isinstance(args[skip], list | tuple | dict):
            budget.step(len(args[skip]))
        if signature is not None:
            bound = signature.bind(*args[skip:], **kwargs)
            bound.apply_defaults()
            precheck(budget, bound.arguments)
            args, kwargs = (*args[:skip], *bound.args), bound.kwargs
        result = function(*args, **kwargs)
        if isinstance(result, Iterator):
            return limits.guarded_items(result, budget, what)
        return budget.check_value(result, what)

    return bounded


def _value_signature(function: Callable[..., Any], skip: int) -> inspect.Signature:
    """The filter's parameters after the context/environment argument Jinja passes first. Filters with
    an async variant report the signature of their plain function, which may not list that argument."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    if skip and parameters and parameters[0].name in {"eval_ctx", "environment", "env", "context"}:
        signature = signature.replace(parameters=parameters[1:])
    return signature


def _materialize(budget: limits.RenderBudget, arguments: dict[str, Any], name: str) -> Any:
    """Read an iterable argument once, counting its items, so it can be sized before the filter runs."""
    value = arguments[name]
    if not isinstance(value, str | Mapping | list | tuple) and isinstance(value, Iterable):
        arguments[name] = list(limits.guarded_items(iter(value), budget, "the filter's input"))
    return arguments[name]


def _check_center(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    if isinstance(arguments["width"], int):
        budget.check_length(arguments["width"], "the result of |center")


def _check_indent(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    text, width = arguments["s"], arguments["width"]
    step = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(text, str):
        budget.check_length(len(text) + (text.count("\n") + 1) * max(step, 0), "the result of |indent")


def _check_join(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    items = _materialize(budget, arguments, "value")
    if isinstance(items, list | tuple):
        limits.check_join(budget, arguments["d"], list(items))


def _check_replace(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    count = -1 if arguments["count"] is None else arguments["count"]
    limits.check_replace(budget, arguments["s"], arguments["old"], arguments["new"], count)


def _check_wordwrap(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    text, width, wrapstring = arguments["s"], arguments["width"], arguments["wrapstring"]
    if isinstance(text, str) and isinstance(width, int):
        budget.check_length(width, "the wrap width")
        lines = min(len(text), len(text) // max(width, 1) + text.count(" ") + text.count("\n")) + 1
        separator = len(wrapstring) if isinstance(wrapstring, str) else 2
        budget.check_length(len(text) + lines * separator, "the result of |wordwrap")


def _check_format(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    if isinstance(arguments["value"], str):
        values = arguments["kwargs"] or arguments["args"]
        limits.check_percent_format(budget, arguments["value"], values)


def _check_sum(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    items = _materialize(budget, arguments, "iterable")
    if isinstance(items, list):
        total = limits.size_of(items, budget) + limits.size_of(arguments["start"], budget)
        budget.check_length(total, "the sum")


def _check_groups(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    count = arguments.get("slices", arguments.get("linecount"))
    if isinstance(count, int):
        budget.check_length(count, "the number of groups")
        budget.step(max(count, 0))


def _check_converted_whole(budget: limits.RenderBudget, arguments: dict[str, Any]) -> None:
    value = next(iter(arguments.values())) if len(arguments) == 1 else arguments.get("value")
    budget.check_length(limits.size_of(value, budget), "the value to convert")


# Filters that can build a much larger value than they were given, checked before they run. Each gets
# the filter's arguments by parameter name (see jinja2/filters.py).
_FILTER_CHECKS: dict[str, Callable[[limits.RenderBudget, dict[str, Any]], None]] = {
    "center": _check_center,
    "indent": _check_indent,
    "join": _check_join,
    "replace": _check_replace,
    "wordwrap": _check_wordwrap,
    "format": _check_format,
    "sum": _check_sum,
    "slice": _check_groups,
    "batch": _check_groups,
    "string": _check_converted_whole,
    "pprint": _check_converted_whole,
    "tojson": _check_converted_whole,
}


class EmptyUndefined(ChainableUndefined):
    """A value the recipient does not have prints as nothing, also through attribute chains and calls:
    `{{ subscriber.attributes.city.title() }}` must not fail a send for a subscriber without a city
    (the sample subscriber, used to validate, has one)."""

    def __call__(self, *args: Any, **kwargs: Any) -> EmptyUndefined:
        return self
