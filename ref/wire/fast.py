"""A fast path derived from the Construct declarations, so no layout is written twice.

Theory of operation.  Each wire format is declared once, as a Construct
``Struct``, and Construct's interpreter is the reference for what its bytes
mean.  The interpreter is slow, and Construct's own ``compile()`` accepts
malformed input, so the first time a format is used this module walks its
declaration and derives:

* one ``struct.Struct`` per run of consecutive fixed-width fields (integers,
  ``Bytes(n)``, 24-bit integers); a Struct made only of such fields,
  including nested fixed-size Structs, becomes a single ``struct.Struct``;
* a small plan per field: the value a ``Const`` must parse to, the project
  adapter whose own ``_decode``/``_encode`` converts it, the ``Default`` or
  ``Rebuild`` that supplies it when building, the length ``Bytes(n)`` demands;
* a step per ``Array``, ``If`` and ``Bytes`` whose count, condition or
  length is an expression, evaluating that same expression (``this.x`` and
  operators on it directly, a lambda over a context as Construct would);
* how to assemble the result: the frozen dataclass the caller names (what
  ``from_container`` makes of Construct's ``Container``), or a named tuple of
  the named fields standing in for the ``Container``.

Parsing never falls back: the derived parser must accept exactly the input
the interpreter accepts, and fail with a Construct error (or ``struct.error``,
or what an adapter raises) wherever it fails, which
``tests/wire/test_fast_differential.py`` checks on valid and malformed input.
Building does fall back: Construct is lenient there (an ``int`` for
``Bytes``, a ``dict`` for a nested Struct, a ``bytearray``), so the derived
builder takes the values the codec's own dataclasses hold and hands anything
else, and any failure, to the interpreter, which then returns its bytes or
raises its exception.  One difference is by design: a lambda in a
declaration sees a nested Struct or an Array as the object it is parsed into
or built from, not as Construct's ``Container`` or list (the declarations
only take a ``len`` or test for None).

The codecs choose a path through an :class:`Engine`: :data:`DERIVED` or
:data:`INTERPRETED`.  A declaration this module cannot derive raises
:class:`DerivationError`, which is not a protocol error, so no decoder hides
it as malformed input.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import operator
import struct
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol, TypeVar

import construct as cs
from construct.expr import BinExpr, Path, UniExpr

from ref.wire._codec import (
    AddressAdapter,
    EnumAdapter,
    FlagsAdapter,
    from_container,
    parse_exact,
    to_container,
)

T = TypeVar("T")

#: The project adapters; their ``_decode``/``_encode`` ignore the context.
_ADAPTERS = (AddressAdapter, EnumAdapter, FlagsAdapter)

_Parse = Callable[[bytes], Any]
_ParseAt = Callable[[bytes, int], tuple[Any, int]]
_Build = Callable[[Any], bytes]
_Step = Callable[[bytes, int, list[Any]], int]
_Convert = Callable[[Any, Any, Any], Any]  # (value, context, path), as Adapter._decode
_Settle = Callable[[Any, Any], Any]  # (given value, context) -> value built from
_Segment = Callable[["_Context", dict[str, Any], list[bytes]], None]
_tuple_new = tuple.__new__
_new_context = object.__new__


class DerivationError(Exception):
    """A declaration uses a construct this module cannot derive (a bug, not bad input)."""


class _Unfit(Exception):
    """The derived builder does not handle this value; the interpreter decides."""


class _Context:
    """A Construct context: attributes for lambdas, items for ``this`` expressions."""

    def __init__(self, fields: Iterable[tuple[str, Any]]) -> None:
        self.__dict__.update(fields)

    def __getitem__(self, name: str) -> Any:
        return self.__dict__[name]


# --- the engines ---------------------------------------------------------------


class Engine(Protocol):
    """How a codec turns bytes into fields and back; the semantic checks are shared."""

    def parse(self, fmt: cs.Construct[Any, Any], data: bytes) -> Any:
        """The named fields at the start of ``data``, by attribute."""

    def parse_exact(self, fmt: cs.Construct[Any, Any], data: bytes) -> Any:
        """Like :meth:`parse`, but every byte of ``data`` must be used."""

    def load(self, fmt: cs.Construct[Any, Any], cls: type[T], data: bytes) -> T:
        """``from_container(cls, parse_exact(fmt, data))``."""

    def build(self, fmt: cs.Construct[Any, Any], values: Mapping[str, Any]) -> bytes:
        """Build from a dict of field values."""

    def dump(self, fmt: cs.Construct[Any, Any], obj: object) -> bytes:
        """Build from a dataclass: ``build(fmt, to_container(obj))``."""


class Interpreted:
    """Construct's interpreter: the reference the derived engine must agree with."""

    def parse(self, fmt: cs.Construct[Any, Any], data: bytes) -> Any:
        return fmt.parse(data)

    def parse_exact(self, fmt: cs.Construct[Any, Any], data: bytes) -> Any:
        return parse_exact(fmt, data)

    def load(self, fmt: cs.Construct[Any, Any], cls: type[T], data: bytes) -> T:
        return from_container(cls, parse_exact(fmt, data))

    def build(self, fmt: cs.Construct[Any, Any], values: Mapping[str, Any]) -> bytes:
        return bytes(fmt.build(values))

    def dump(self, fmt: cs.Construct[Any, Any], obj: object) -> bytes:
        return bytes(fmt.build(to_container(obj)))


class Derived:
    """The derived fast path: codecs derived once per format (and class), on first use."""

    def __init__(self) -> None:
        self._prefix: dict[Any, _Parse] = {}
        self._exact: dict[Any, _Parse] = {}
        self._loaders: dict[tuple[Any, type], _Parse] = {}
        self._mappers: dict[Any, _Build] = {}
        self._dumpers: dict[tuple[Any, type], _Build] = {}

    def parser(self, fmt: cs.Construct[Any, Any], cls: type | None = None) -> _Parse:
        """A function parsing all of its argument into ``cls`` (a row if None)."""
        return _top_parser(_layout(fmt), cls, exact=True)

    def builder(self, fmt: cs.Construct[Any, Any], cls: type | None = None) -> _Build:
        """A function building from a ``cls`` instance (a dict if None); raises if unfit."""
        if cls is not None and not dataclasses.is_dataclass(cls):
            return _always_unfit
        return _bind_builder(_layout(fmt), cls)

    def parse(self, fmt: cs.Construct[Any, Any], data: bytes) -> Any:
        parse = self._prefix.get(fmt)
        if parse is None:
            parse = self._prefix[fmt] = _top_parser(_layout(fmt), None, exact=False)
        return parse(data)

    def parse_exact(self, fmt: cs.Construct[Any, Any], data: bytes) -> Any:
        parse = self._exact.get(fmt)
        if parse is None:
            parse = self._exact[fmt] = self.parser(fmt)
        return parse(data)

    def load(self, fmt: cs.Construct[Any, Any], cls: type[T], data: bytes) -> T:
        key = (fmt, cls)
        parse = self._loaders.get(key)
        if parse is None:
            parse = self._loaders[key] = self.parser(fmt, cls)
        result: T = parse(data)
        return result

    def build(self, fmt: cs.Construct[Any, Any], values: Mapping[str, Any]) -> bytes:
        build = self._mappers.get(fmt)
        if build is None:
            build = self._mappers[fmt] = self.builder(fmt)
        try:
            return build(values)
        except Exception:
            return INTERPRETED.build(fmt, values)

    def dump(self, fmt: cs.Construct[Any, Any], obj: object) -> bytes:
        key = (fmt, type(obj))
        build = self._dumpers.get(key)
        if build is None:
            build = self._dumpers[key] = self.builder(fmt, type(obj))
        try:
            return build(obj)
        except Exception:
            return INTERPRETED.dump(fmt, obj)


def _always_unfit(obj: object) -> bytes:
    raise _Unfit


# --- declarations -> layouts ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Leaf:
    """A fixed-width field: one ``struct`` item and the conversions around it."""

    code: str
    size: int
    decode: _Convert | None  # unpacked item -> parsed value; may raise
    settle: _Settle | None  # Const, Default, Rebuild
    encode: _Convert | None  # the value built from -> struct item; may raise
    length: int | None  # Bytes(n): the item must be n long (struct would pad)
    contextual: bool  # settle evaluates a context expression
    computed: Callable[[Any], Any] | None = None  # the lambda, when settle is only a Rebuild


@dataclasses.dataclass(frozen=True)
class _Array:
    count: Any  # an int or a context expression
    element: _Node


@dataclasses.dataclass(frozen=True)
class _Optional:
    condition: Any  # a value or a context expression
    then: _Node


@dataclasses.dataclass(frozen=True)
class _VarBytes:
    length: Any  # a context expression


@dataclasses.dataclass(frozen=True)
class _Field:
    name: str | None
    node: _Node
    buildnone: bool  # Construct builds it from nothing when the value is missing


@dataclasses.dataclass(frozen=True)
class _Layout:
    """A ``Struct``: its fields in wire order."""

    fields: tuple[_Field, ...]

    @functools.cached_property
    def fixed(self) -> bool:
        """Every field is a leaf or a fixed layout: one ``struct.Struct`` covers it."""
        return all(
            isinstance(f.node, _Leaf) or (isinstance(f.node, _Layout) and f.node.fixed)
            for f in self.fields
        )

    @functools.cached_property
    def leaves(self) -> tuple[_Leaf, ...]:
        """The leaves of a fixed layout, nested layouts flattened, in wire order."""
        out: list[_Leaf] = []
        for field in self.fields:
            node = field.node
            out.extend(node.leaves if isinstance(node, _Layout) else (typing.cast(_Leaf, node),))
        return tuple(out)

    @functools.cached_property
    def size(self) -> int:
        return sum(leaf.size for leaf in self.leaves)

    @functools.cached_property
    def code(self) -> str:
        return "".join(leaf.code for leaf in self.leaves)


_Node = _Leaf | _Array | _Optional | _VarBytes | _Layout

_LAYOUTS: dict[Any, _Layout] = {}


def _layout(fmt: Any) -> _Layout:
    layout = _LAYOUTS.get(fmt)
    if layout is None:
        layout = _LAYOUTS[fmt] = _derive_struct(fmt)
    return layout


def _derive_struct(fmt: Any) -> _Layout:
    if not isinstance(fmt, cs.Struct):
        raise DerivationError(f"not a Struct: {fmt!r}")
    _check_hooks(fmt)
    fields = []
    for sub in fmt.subcons:
        _check_hooks(sub)
        fields.append(_Field(sub.name, _derive_node(sub), bool(sub.flagbuildnone)))
    return _Layout(tuple(fields))


def _check_hooks(con: Any) -> None:
    if con.parsed is not None:
        raise DerivationError(f"parsed hooks are not supported: {con!r}")


def _derive_node(con: Any) -> _Node:
    """The plan for one field: wrappers (outermost first) around a base construct."""
    wrappers: list[Any] = []
    while True:
        _check_hooks(con)
        if isinstance(con, cs.Renamed):
            con = con.subcon
        elif isinstance(con, (cs.Const, cs.Default, cs.Rebuild, *_ADAPTERS)):
            wrappers.append(con)
            con = con.subcon
        else:
            break
    if isinstance(con, cs.FormatField | cs.BytesInteger) or (
        isinstance(con, cs.Bytes) and isinstance(con.length, int)
    ):
        return _derive_leaf(wrappers, con)
    if wrappers:
        raise DerivationError(f"{wrappers[-1]!r} around {con!r} is not supported")
    if isinstance(con, cs.Bytes):
        return _VarBytes(con.length)
    if isinstance(con, cs.Struct):
        return _derive_struct(con)
    if isinstance(con, cs.Array) and not con.discard:
        return _Array(con.count, _derive_node(con.subcon))
    if isinstance(con, cs.IfThenElse) and con.elsesubcon is cs.Pass:
        return _Optional(con.condfunc, _derive_node(con.thensubcon))
    raise DerivationError(f"no fast path for {con!r}")


def _derive_leaf(wrappers: list[Any], base: Any) -> _Leaf:
    """Parsing applies the wrappers inside out; building applies them outside in.

    The value a field leaves in the build context is the one entering its
    first adapter (or the base construct): ``Adapter._build`` returns its input.
    """
    code, size, base_decode, base_encode, length = _derive_base(base)
    decoders = [base_decode] if base_decode else []
    for wrapper in reversed(wrappers):
        if isinstance(wrapper, _ADAPTERS):
            decoders.append(wrapper._decode)
        elif isinstance(wrapper, cs.Const):
            decoders.append(_const_decoder(wrapper.value))
    settlers: list[_Settle] = []
    encoders: list[_Convert] = []
    contextual = False
    for wrapper in wrappers:
        if isinstance(wrapper, _ADAPTERS):
            encoders.append(_adapter_encoder(wrapper))
        elif encoders:
            raise DerivationError(f"{wrapper!r} inside an adapter is not supported")
        elif isinstance(wrapper, cs.Const):
            settlers.append(_const_settler(wrapper.value))
        else:
            value = wrapper.func if isinstance(wrapper, cs.Rebuild) else wrapper.value
            contextual = contextual or callable(value)
            settlers.append(_settler(isinstance(wrapper, cs.Rebuild), value))
    if base_encode:
        encoders.append(base_encode)
    rebuild = wrappers[0] if wrappers and isinstance(wrappers[0], cs.Rebuild) else None
    computed = rebuild.func if rebuild is not None and callable(rebuild.func) else None
    return _Leaf(
        code,
        size,
        _chain(decoders),
        _chain_settlers(settlers),
        _chain(encoders),
        length,
        contextual,
        computed,
    )


def _adapter_encoder(adapter: Any) -> _Convert:
    """The adapter's own ``_encode``, skipped for a member of its ``IntEnum``/``IntFlag``.

    ``EnumAdapter`` encodes ``int(enum_type(obj).value)`` and ``FlagsAdapter``
    ``int(obj)``: for a member of an int-valued enum that is the integer the
    member already packs as, and the enum calls are most of an encode's cost.
    """
    encode = adapter._encode
    members = getattr(adapter, "enum_type", None) or getattr(adapter, "flag_type", None)
    if not (isinstance(members, type) and issubclass(members, int)):
        return typing.cast(_Convert, encode)

    def encode_member(value: Any, context: Any, path: Any) -> Any:
        if type(value) is members:
            return value
        return encode(value, context, path)

    return encode_member


def _derive_base(base: Any) -> tuple[str, int, _Convert | None, _Convert | None, int | None]:
    if isinstance(base, cs.FormatField):
        if not base.fmtstr.startswith(">"):
            raise DerivationError(f"only big-endian fields are supported: {base!r}")
        return base.fmtstr[1:], base.length, None, None, None
    if isinstance(base, cs.BytesInteger):
        length, signed, swapped = base.length, base.signed, base.swapped
        if not (isinstance(length, int) and length > 0 and isinstance(swapped, bool)):
            raise DerivationError(f"only fixed-width BytesInteger is supported: {base!r}")
        return f"{length}s", length, *_integer_codec(length, bool(signed), swapped), None
    length = base.length
    if length < 0:
        raise DerivationError(f"negative Bytes length: {base!r}")
    return f"{length}s", length, None, None, length


def _integer_codec(length: int, signed: bool, swapped: bool) -> tuple[_Convert, _Convert]:
    order: typing.Literal["little", "big"] = "little" if swapped else "big"

    def decode(data: bytes, context: Any, path: Any) -> int:
        return int.from_bytes(data, order, signed=signed)

    def encode(value: Any, context: Any, path: Any) -> bytes:
        if not isinstance(value, int):
            raise _Unfit
        return value.to_bytes(length, order, signed=signed)

    return decode, encode


def _const_decoder(expected: Any) -> _Convert:
    def check(value: Any, context: Any, path: Any) -> Any:
        if not value == expected:
            raise cs.ConstError(f"parsing expected {expected!r} but parsed {value!r}")
        return value

    return check


def _const_settler(expected: Any) -> _Settle:
    def settle(given: Any, context: Any) -> Any:
        if given not in (None, expected):
            raise _Unfit
        return expected

    return settle


def _settler(rebuild: bool, value: Any) -> _Settle:
    """Rebuild ignores the given value; Default uses it unless it is None."""
    if callable(value):
        if rebuild:
            return lambda given, context: value(context)
        return lambda given, context: value(context) if given is None else given
    if rebuild:
        return lambda given, context: value
    return lambda given, context: value if given is None else given


def _chain(funcs: list[_Convert]) -> _Convert | None:
    if len(funcs) <= 1:
        return funcs[0] if funcs else None

    def chained(value: Any, context: Any, path: Any) -> Any:
        for func in funcs:
            value = func(value, context, path)
        return value

    return chained


def _chain_settlers(funcs: list[_Settle]) -> _Settle | None:
    if len(funcs) <= 1:
        return funcs[0] if funcs else None

    def chained(given: Any, context: Any) -> Any:
        for func in funcs:
            given = func(given, context)
        return given

    return chained


# --- what a parsed value becomes -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Target:
    """What a parsed node becomes.

    A layout becomes a ``cls`` (a row when None), an array a ``container``
    (a list when None) of ``inner`` targets, an If None or an ``inner``; a
    leaf stays as parsed.
    """

    cls: type | None = None
    container: type | None = None
    inner: _Target | None = None


_AS_PARSED = _Target()


def _row_target(node: _Node) -> _Target:
    """What Construct's Container holds: Containers (rows), lists, None or values."""
    if isinstance(node, _Array):
        return _Target(inner=_row_target(node.element))
    if isinstance(node, _Optional):
        return _Target(inner=_row_target(node.then))
    return _AS_PARSED


def _optional_inner(hint: Any) -> Any:
    """X for ``X | None`` (what ``_codec._converter`` treats as optional), else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(inner) == 1:
            return inner[0]
    return None


def _dataclass_of(hint: Any) -> type | None:
    hint = _optional_inner(hint) or hint
    return hint if isinstance(hint, type) and dataclasses.is_dataclass(hint) else None


def _hint_target(node: _Node, hint: Any) -> _Target:
    """What ``from_container`` makes of the node for a field typed ``hint``.

    Mirrors ``_codec._converter``: a one-member union with None is optional,
    ``tuple[X, ...]`` converts each item, a dataclass is built from its fields,
    anything else is taken as parsed.
    """
    optional = _optional_inner(hint)
    if optional is not None:
        if isinstance(node, _Optional):
            return _Target(inner=_hint_target(node.then, optional))
        return _hint_target(node, optional)
    is_tuple = typing.get_origin(hint) is tuple
    is_dataclass = isinstance(hint, type) and dataclasses.is_dataclass(hint)
    plain = not is_tuple and not is_dataclass
    if isinstance(node, _Leaf | _VarBytes) and plain:
        return _AS_PARSED
    if isinstance(node, _Layout) and is_dataclass:
        return _Target(cls=hint)
    if isinstance(node, _Array) and is_tuple:
        inner = _hint_target(node.element, typing.get_args(hint)[0])
        return _Target(container=tuple, inner=inner)
    if isinstance(node, _Optional) and isinstance(node.then, _Leaf | _VarBytes) and plain:
        return _AS_PARSED
    raise DerivationError(f"cannot make {hint!r} from {node!r}")


def _output(
    layout: _Layout, cls: type | None
) -> tuple[Callable[..., Any], list[int], list[_Target]]:
    """The constructor, the field indices of its arguments, and each field's target."""
    if cls is None:
        named = [i for i, field in enumerate(layout.fields) if field.name]
        try:
            row = collections.namedtuple("Row", [str(layout.fields[i].name) for i in named])  # type: ignore[misc]
        except ValueError as exc:
            raise DerivationError(str(exc)) from None
        return row, named, [_row_target(field.node) for field in layout.fields]
    if not dataclasses.is_dataclass(cls):
        raise DerivationError(f"{cls!r} is not a dataclass")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in layout.fields]
    targets = [_AS_PARSED] * len(layout.fields)
    picks = []
    for attribute in dataclasses.fields(cls):
        if not attribute.init or attribute.kw_only or attribute.name not in names:
            raise DerivationError(f"{cls.__name__}.{attribute.name} has no field to come from")
        index = names.index(attribute.name)
        targets[index] = _hint_target(layout.fields[index].node, hints[attribute.name])
        picks.append(index)
    return cls, picks, targets


# --- parsing ---------------------------------------------------------------------


def _top_parser(layout: _Layout, cls: type | None, exact: bool) -> _Parse:
    """Parse a whole message (``exact``) or its start into ``cls`` (a row if None)."""
    make, picks, targets = _output(layout, cls)
    if layout.fixed:
        unpack_from = struct.Struct(">" + layout.code).unpack_from
        size = layout.size
        post = _post(layout.leaves)
        assemble = _fixed_maker(layout, make, picks, targets, 0)

        def parse_fixed(data: bytes) -> Any:
            if type(data) is not bytes:
                data = bytes(memoryview(data))
            if len(data) < size:
                _short(layout.leaves, data, 0)
            items = unpack_from(data)
            value = assemble(post(items) if post else items)
            if exact and len(data) != size:
                raise cs.TerminatedError(f"expected end of stream after {size} bytes")
            return value

        return parse_fixed
    parse_at = _variable_parser(layout, make, picks, targets)

    def parse(data: bytes) -> Any:
        if type(data) is not bytes:
            data = bytes(memoryview(data))
        value, end = parse_at(data, 0)
        if exact and end != len(data):
            raise cs.TerminatedError(f"expected end of stream at offset {end}")
        return value

    return parse


def _bind_parser(layout: _Layout, cls: type | None) -> _ParseAt:
    """Parse ``layout`` at an offset into ``cls`` (a row if None)."""
    make, picks, targets = _output(layout, cls)
    if not layout.fixed:
        return _variable_parser(layout, make, picks, targets)
    unpack_from = struct.Struct(">" + layout.code).unpack_from
    size, leaves = layout.size, layout.leaves
    post = _post(leaves)
    assemble = _fixed_maker(layout, make, picks, targets, 0)

    def parse_at(data: bytes, offset: int) -> tuple[Any, int]:
        try:
            items = unpack_from(data, offset)
        except struct.error:
            _short(leaves, data, offset)
        return assemble(post(items) if post else items), offset + size

    return parse_at


def _short(leaves: Sequence[_Leaf], data: bytes, offset: int) -> typing.NoReturn:
    """Fail on input too short for ``leaves`` as Construct does: at the first bad field."""
    for leaf in leaves:
        if offset + leaf.size > len(data):
            break
        item = struct.unpack_from(">" + leaf.code, data, offset)[0]
        if leaf.decode is not None:
            leaf.decode(item, None, None)  # a Const or an adapter may fail first
        offset += leaf.size
    raise cs.StreamError(f"stream read less than specified amount at offset {offset}")


def _post(leaves: Sequence[_Leaf]) -> Callable[[tuple[Any, ...]], list[Any]] | None:
    """Apply each leaf's decoding (Const checks, adapters) to the unpacked items, if any."""
    plan = [(i, leaf.decode) for i, leaf in enumerate(leaves) if leaf.decode]
    if not plan:
        return None

    def post(items: tuple[Any, ...]) -> list[Any]:
        values = list(items)
        for i, decode in plan:
            values[i] = decode(values[i], None, None)
        return values

    return post


def _maker(
    make: Callable[..., Any], producers: list[int | Callable[[Any], Any]], width: int | None
) -> Callable[[Any], Any]:
    """``make`` applied to each producer's value (an index into the values, or a function).

    ``width`` is the number of values when they are exactly this object's, else None.
    """
    if all(isinstance(p, int) for p in producers):
        indices = typing.cast(list[int], producers)
        if not indices:
            return lambda values: make()
        if width is not None and indices == list(range(width)):
            if isinstance(make, type) and issubclass(make, tuple):  # a row
                return lambda values: _tuple_new(make, values)
            return lambda values: make(*values)
        if len(indices) == 1:
            (only,) = indices
            return lambda values: make(values[only])
        getter = operator.itemgetter(*indices)
        return lambda values: make(*getter(values))
    functions = [operator.itemgetter(p) if isinstance(p, int) else p for p in producers]
    return lambda values: make(*[produce(values) for produce in functions])


def _fixed_maker(
    layout: _Layout, make: Callable[..., Any], picks: list[int], targets: list[_Target], base: int
) -> Callable[[Any], Any]:
    """Assemble a fixed layout from the flat values of all leaves, its own from ``base``."""
    producers: list[int | Callable[[Any], Any]] = []
    index = base
    for field, target in zip(layout.fields, targets, strict=True):
        node = field.node
        if isinstance(node, _Layout):
            sub_make, sub_picks, sub_targets = _output(node, target.cls)
            producers.append(_fixed_maker(node, sub_make, sub_picks, sub_targets, index))
            index += len(node.leaves)
        else:
            producers.append(index)
            index += 1
    width = len(layout.leaves) if base == 0 else None
    return _maker(make, [producers[i] for i in picks], width)


def _variable_parser(
    layout: _Layout, make: Callable[..., Any], picks: list[int], targets: list[_Target]
) -> _ParseAt:
    names = [field.name for field in layout.fields]
    steps: list[_Step] = []
    run: list[_Leaf] = []
    for index, (field, target) in enumerate(zip(layout.fields, targets, strict=True)):
        if isinstance(field.node, _Leaf):
            run.append(field.node)
            continue
        if run:
            steps.append(_run_step(run))
            run = []
        steps.append(_node_step(field.node, target, names[:index]))
    if run:
        steps.append(_run_step(run))
    assemble = _maker(make, list(picks), len(names))

    def parse_at(data: bytes, offset: int) -> tuple[Any, int]:
        values: list[Any] = []
        for step in steps:
            offset = step(data, offset, values)
        return assemble(values), offset

    return parse_at


def _run_step(leaves: list[_Leaf]) -> _Step:
    unpack_from = struct.Struct(">" + "".join(leaf.code for leaf in leaves)).unpack_from
    size = sum(leaf.size for leaf in leaves)
    post = _post(leaves)

    def step(data: bytes, offset: int, values: list[Any]) -> int:
        try:
            items = unpack_from(data, offset)
        except struct.error:
            _short(leaves, data, offset)
        values.extend(post(items) if post else items)
        return offset + size

    return step


def _expression(expr: Any, names: Sequence[str | None] | None) -> Callable[[Any], Any]:
    """Evaluate a count, condition or length over the fields before it.

    When parsing, ``names`` lists those fields and the values come as a list;
    when building (``names`` None) they come as a context keyed by name.
    ``this.x`` and operators over it read the values directly; another
    callable (a lambda) gets a context, as in Construct.
    """
    if not callable(expr):
        return lambda values: expr
    parts = vars(expr) if isinstance(expr, Path | BinExpr | UniExpr) else {}
    if isinstance(expr, Path):
        parent, field = parts["_Path__parent"], parts["_Path__field"]
        root = vars(parent) if parent is not None else {}
        if root.get("_Path__parent", 0) is None and root["_Path__name"] == "this":
            if names is None:
                return operator.attrgetter(field)
            if field in names:
                return operator.itemgetter(len(names) - 1 - list(names)[::-1].index(field))
    elif isinstance(expr, BinExpr):
        op, lhs, rhs = parts["op"], _expression(parts["lhs"], names), parts["rhs"]
        if not callable(rhs):
            return lambda values: op(lhs(values), rhs)
        right = _expression(rhs, names)
        return lambda values: op(lhs(values), right(values))
    elif isinstance(expr, UniExpr):
        unary, operand = parts["op"], _expression(parts["operand"], names)
        return lambda values: unary(operand(values))
    if names is None:
        return typing.cast(Callable[[Any], Any], expr)
    named = [(i, name) for i, name in enumerate(names) if name]
    return lambda values: expr(_Context((name, values[i]) for i, name in named))


_NodeParser = Callable[[bytes, int, list[Any]], tuple[Any, int]]


def _node_step(node: _Node, target: _Target, names: list[str | None]) -> _Step:
    parse_at = _node_parser(node, target, names)

    def step(data: bytes, offset: int, values: list[Any]) -> int:
        value, offset = parse_at(data, offset, values)
        values.append(value)
        return offset

    return step


def _node_parser(node: _Node, target: _Target, names: list[str | None]) -> _NodeParser:
    """Parse one field; ``values`` are those of the fields before it."""
    if isinstance(node, _Leaf | _Layout):
        parse_at = _standalone_parser(node, target)
        return lambda data, offset, values: parse_at(data, offset)
    if isinstance(node, _VarBytes):
        return _var_bytes_parser(_expression(node.length, names))
    if isinstance(node, _Optional):
        condition = _expression(node.condition, names)
        then = _node_parser(node.then, target.inner or _AS_PARSED, names)

        def parse_optional(data: bytes, offset: int, values: list[Any]) -> tuple[Any, int]:
            if condition(values):
                return then(data, offset, values)
            return None, offset

        return parse_optional
    return _array_parser(node, target, _expression(node.count, names))


def _standalone_parser(node: _Leaf | _Layout, target: _Target) -> _ParseAt:
    """A leaf or a layout on its own (an array element, the body of an If)."""
    if isinstance(node, _Layout):
        return _bind_parser(node, target.cls)
    unpack_from, size, decode = struct.Struct(">" + node.code).unpack_from, node.size, node.decode

    def parse_leaf(data: bytes, offset: int) -> tuple[Any, int]:
        try:
            (item,) = unpack_from(data, offset)
        except struct.error:
            _short((node,), data, offset)
        return (item if decode is None else decode(item, None, None)), offset + size

    return parse_leaf


def _var_bytes_parser(length: Callable[[Any], Any]) -> _NodeParser:
    def parse_at(data: bytes, offset: int, values: list[Any]) -> tuple[Any, int]:
        size = length(values)
        if size < 0:
            raise cs.StreamError(f"length must be non-negative, found {size}")
        try:
            end = offset + operator.index(size)
        except TypeError:
            raise cs.StreamError(f"stream.read() failed, requested {size!r} bytes") from None
        chunk = data[offset:end]
        if len(chunk) != size:
            raise cs.StreamError(f"expected {size} bytes, found {len(chunk)}")
        return chunk, end

    return parse_at


def _array_parser(node: _Array, target: _Target, count_of: Callable[[Any], Any]) -> _NodeParser:
    container = target.container or list
    if not isinstance(node.element, _Leaf | _Layout):
        raise DerivationError(f"arrays of {node.element!r} are not supported")
    parse_element = _standalone_parser(node.element, target.inner or _AS_PARSED)

    def parse_at(data: bytes, offset: int, values: list[Any]) -> tuple[Any, int]:
        count = count_of(values)
        if not 0 <= count:  # noqa: SIM300 (Construct's own test, for any count type)
            raise cs.RangeError(f"invalid count {count}")
        items = []
        for _ in range(count):
            item, offset = parse_element(data, offset)
            items.append(item)
        return container(items), offset

    return parse_at


# --- building: fixed layouts -------------------------------------------------------


def _bind_builder(layout: _Layout, cls: type | None) -> _Build:
    """Build from a ``cls`` instance, or from a dict when ``cls`` is None.

    The result raises (anything) when the interpreter should decide instead.
    """
    if layout.fixed and not _contextual(layout):
        try:
            return _Packer(layout, cls).pack_one
        except _Unfit:
            return _always_unfit
    return _ordered_builder(layout, cls)


def _contextual(layout: _Layout) -> bool:
    return any(leaf.contextual for leaf in layout.leaves)


def _item(leaf: _Leaf, value: Any, context: Any) -> Any:
    """Given value -> struct item: settle, encode, check the length of Bytes(n)."""
    if leaf.settle is not None:
        value = leaf.settle(value, context)
    if leaf.encode is not None:
        value = leaf.encode(value, context, None)
    if leaf.length is not None and len(value) != leaf.length:
        raise _Unfit
    return value


class _Packer:
    """Packs a fixed layout, nested ones included, with one ``struct`` call.

    The object's values are read in wire order by one ``attrgetter`` (or
    ``itemgetter`` for a dict).  Fields the object lacks are Const or Default,
    settled once here: zeros become pad bytes, other values are slotted in.
    Raises ``_Unfit`` when Construct could not build from such an object
    either (a field it cannot build from nothing).
    """

    def __init__(self, layout: _Layout, cls: type | None) -> None:
        paths, absent = _sources(layout, cls)
        sourced = [(leaf, path) for leaf, path in zip(layout.leaves, paths, strict=True) if path]
        width = len(sourced)
        codes: list[str] = []
        slots: list[int] = []  # per struct argument: its index in (*values, *constants)
        constants: list[Any] = []
        for leaf, path in zip(layout.leaves, paths, strict=True):
            if path is None:
                try:
                    item = _item(leaf, None, None)
                    packed = struct.pack(">" + leaf.code, item)
                except Exception:
                    raise _Unfit from None  # Construct cannot build it from nothing either
                if not any(packed):
                    codes.append(f"{leaf.size}x")
                    continue
                slots.append(width + len(constants))
                constants.append(item)
            else:
                slots.append(len(slots) - len(constants))
            codes.append(leaf.code)
        self.code = "".join(codes)
        self.cls = cls
        self.absent = absent
        # per given value: (index, settle, encode) when it needs converting, and the
        # length Bytes(n) demands of the result
        self.converts = [
            (i, leaf.settle, leaf.encode)
            for i, (leaf, _) in enumerate(sourced)
            if leaf.settle or leaf.encode
        ]
        self.lengths = [
            (i, leaf.length) for i, (leaf, _) in enumerate(sourced) if leaf.length is not None
        ]
        self.constants = tuple(constants)
        self.arrange = operator.itemgetter(*slots) if constants else None
        self.fetch = _getter([str(path) for _, path in sourced], mapping=cls is None)
        self.checks = [] if cls is None else _nested_checks(layout, cls, "")
        self.pack_one = self._one()

    def _one(self) -> _Build:
        cls, absent, checks, fetch = self.cls, self.absent, self.checks, self.fetch
        converts, lengths = self.converts, self.lengths
        arrange, constants, pack = self.arrange, self.constants, struct.Struct(">" + self.code).pack

        def pack_one(obj: Any) -> bytes:
            if cls is None:
                if type(obj) is not dict or not absent.isdisjoint(obj):
                    raise _Unfit
            elif type(obj) is not cls:
                raise _Unfit
            for get, sub_cls in checks:
                if type(get(obj)) is not sub_cls:
                    raise _Unfit
            values: Sequence[Any] = fetch(obj)
            if converts:
                values = list(values)
                for i, settle, encode in converts:
                    value = values[i] if settle is None else settle(values[i], None)
                    values[i] = value if encode is None else encode(value, None, None)
            for i, length in lengths:
                if len(values[i]) != length:
                    raise _Unfit
            if arrange is not None:
                values = arrange((*values, *constants))
            return pack(*values)

        return pack_one


def _getter(keys: list[str], mapping: bool) -> Callable[[Any], tuple[Any, ...]]:
    """A function returning the values at ``keys`` (dotted attribute paths) as a tuple."""
    get = operator.itemgetter if mapping else operator.attrgetter
    if not keys:
        return lambda obj: ()
    if len(keys) == 1:
        single = get(keys[0])
        return lambda obj: (single(obj),)
    return typing.cast(Callable[[Any], tuple[Any, ...]], get(*keys))


def _sources(layout: _Layout, cls: type | None) -> tuple[list[str | None], frozenset[str]]:
    """Per leaf, the dotted path of its value in the object, or None to build it from nothing.

    Also the names a dict must not hold for that to be right.  Raises
    ``_Unfit`` when Construct could not build from such an object.
    """
    absent: set[str] = set()

    def walk(layout: _Layout, cls: type | None, prefix: str) -> list[str | None]:
        known = {f.name for f in dataclasses.fields(cls)} if cls else None
        hints = typing.get_type_hints(cls) if cls else {}
        out: list[str | None] = []
        for field in layout.fields:
            node, name = field.node, field.name
            width = len(node.leaves) if isinstance(node, _Layout) else 1
            given = name is not None and (name in known if known is not None else True)
            if cls is None and field.buildnone and name is not None:
                absent.add(name)  # a dict holding it goes to the interpreter
                given = False
            if not given:
                if not field.buildnone:
                    raise _Unfit  # Construct raises KeyError
                out.extend([None] * width)
            elif isinstance(node, _Layout):
                sub_cls = _dataclass_of(hints.get(str(name)))
                if cls is None or sub_cls is None:
                    raise _Unfit  # a nested Struct as anything but its dataclass
                out.extend(walk(node, sub_cls, f"{prefix}{name}."))
            else:
                out.append(f"{prefix}{name}")
        return out

    return walk(layout, cls, ""), frozenset(absent)


def _nested_checks(
    layout: _Layout, cls: type, prefix: str
) -> list[tuple[Callable[[Any], Any], type]]:
    """(getter, class) for each nested Struct the object must hold as that dataclass."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    checks: list[tuple[Callable[[Any], Any], type]] = []
    for field in layout.fields:
        if isinstance(field.node, _Layout) and field.name in known:
            sub_cls = typing.cast(type, _dataclass_of(hints[field.name]))
            checks.append((operator.attrgetter(f"{prefix}{field.name}"), sub_cls))
            checks.extend(_nested_checks(field.node, sub_cls, f"{prefix}{field.name}."))
    return checks


# --- building: layouts with expressions or variable parts ----------------------------


def _ordered_builder(layout: _Layout, cls: type | None) -> _Build:
    """Build field by field over a context, as ``Struct._build`` does."""
    names: list[str] = []
    hints: dict[str, Any] = {}
    if cls is not None:
        names = [f.name for f in dataclasses.fields(cls)]
        hints = typing.get_type_hints(cls)
        if any(not f.buildnone and f.name not in names for f in layout.fields):
            return _always_unfit  # Construct raises KeyError
    fetch = _getter(names, mapping=False)
    width = len(names)
    segments: list[_Segment] = []
    run: list[_Field] = []
    try:
        for field in layout.fields:
            if isinstance(field.node, _Leaf):
                run.append(field)
                continue
            if run:
                segments.append(_run_segment(run))
                run = []
            segments.append(_node_segment(field, hints.get(str(field.name)), cls is None))
        if run:
            segments.append(_run_segment(run))
    except _Unfit:
        return _always_unfit

    def build(obj: Any) -> bytes:
        context = _new_context(_Context)
        if cls is None:
            if type(obj) is not dict:
                raise _Unfit
            context.__dict__ = fields = obj.copy()
        elif type(obj) is not cls:
            raise _Unfit
        elif len(getattr(obj, "__dict__", ())) == width:
            # Context.update(to_container(obj)): the dataclass's fields, by name.
            context.__dict__ = fields = obj.__dict__.copy()
        else:
            context.__dict__ = fields = dict(zip(names, fetch(obj), strict=True))
        parts: list[bytes] = []
        for segment in segments:
            segment(context, fields, parts)
        return b"".join(parts)

    return build


def _run_segment(run: list[_Field]) -> _Segment:
    """Consecutive leaves: settle in order (updating the context), then one pack."""
    if any(field.name is None for field in run):
        raise _Unfit  # anonymous leaves among expressions: left to the interpreter
    names = [str(field.name) for field in run]
    leaves = [typing.cast(_Leaf, field.node) for field in run]
    settles = [
        (name, leaf.settle, leaf.computed)
        for name, leaf in zip(names, leaves, strict=True)
        if leaf.settle
    ]
    encodes = [(i, leaf.encode) for i, leaf in enumerate(leaves) if leaf.encode]
    lengths = [(i, leaf.length) for i, leaf in enumerate(leaves) if leaf.length is not None]
    fetch = _getter(names, mapping=True)
    pack = struct.Struct(">" + "".join(leaf.code for leaf in leaves)).pack

    def segment(context: _Context, fields: dict[str, Any], parts: list[bytes]) -> None:
        for name, settle, computed in settles:
            if computed is not None:  # a Rebuild: the given value does not matter
                fields[name] = computed(context)
            else:
                fields[name] = settle(fields.get(name), context)
        values: Sequence[Any] = fetch(fields)
        if encodes:
            values = list(values)
            for i, encode in encodes:
                values[i] = encode(values[i], context, None)
        for i, length in lengths:
            if len(values[i]) != length:
                raise _Unfit
        parts.append(pack(*values))

    return segment


_NodeBuild = Callable[[Any, _Context, list[bytes]], None]


def _node_segment(field: _Field, hint: Any, mapping: bool) -> _Segment:
    build = _node_builder(field.node, hint, mapping)
    name, buildnone = str(field.name), field.buildnone

    def segment(context: _Context, fields: dict[str, Any], parts: list[bytes]) -> None:
        build(fields.get(name) if buildnone else fields[name], context, parts)

    return segment


def _node_builder(node: _Node, hint: Any, mapping: bool) -> _NodeBuild:
    """Build one field that is not in a run of leaves into ``parts``."""
    if isinstance(node, _Leaf):
        pack = struct.Struct(">" + node.code).pack
        return lambda value, context, parts: parts.append(pack(_item(node, value, context)))
    if isinstance(node, _Layout):
        sub_cls = None if mapping else _dataclass_of(hint)
        if sub_cls is None and not mapping:
            raise _Unfit
        build = _bind_builder(node, sub_cls)
        return lambda value, context, parts: parts.append(build(value))
    if isinstance(node, _VarBytes):
        length = _expression(node.length, None)

        def build_bytes(value: Any, context: _Context, parts: list[bytes]) -> None:
            size = length(context)
            if type(value) is not bytes or not 0 <= size == len(value):
                raise _Unfit
            parts.append(value)

        return build_bytes
    if isinstance(node, _Optional):
        condition = _expression(node.condition, None)
        then = _node_builder(node.then, _optional_inner(hint), mapping)

        def build_optional(value: Any, context: _Context, parts: list[bytes]) -> None:
            if condition(context):
                then(value, context, parts)

        return build_optional
    return _array_builder(node, hint, mapping)


def _array_builder(node: _Array, hint: Any, mapping: bool) -> _NodeBuild:
    count_of = _expression(node.count, None)
    element = node.element
    args = typing.get_args(hint)
    element_hint = args[0] if typing.get_origin(hint) is tuple and args else None
    if isinstance(element, _Leaf):
        pack = struct.Struct(">" + element.code).pack
        build_item: _Build = lambda item: pack(_item(element, item, None))  # noqa: E731
    elif isinstance(element, _Layout):
        sub_cls = None if mapping else _dataclass_of(element_hint)
        if sub_cls is None and not mapping:
            raise _Unfit
        build_item = _bind_builder(element, sub_cls)
    else:
        raise DerivationError(f"arrays of {element!r} are not supported")

    def build_array(value: Any, context: _Context, parts: list[bytes]) -> None:
        count = count_of(context)
        if type(value) not in (tuple, list) or not 0 <= count == len(value):
            raise _Unfit
        parts.extend(map(build_item, value))

    return build_array


def fixed_struct(fmt: cs.Construct[Any, Any]) -> struct.Struct:
    """The ``struct.Struct`` of a fixed-size format, derived from its declaration.

    For a codec's shortcut for its commonest packets: the fields' order and
    widths still come from the one declaration.  What the fields' constants
    and adapters would check or convert is the caller's to do.
    """
    layout = _layout(fmt)
    if not layout.fixed:
        raise DerivationError(f"not of a fixed size: {fmt!r}")
    return struct.Struct(">" + layout.code)


INTERPRETED: Final = Interpreted()
DERIVED: Final = Derived()

__all__ = [
    "DERIVED",
    "INTERPRETED",
    "DerivationError",
    "Derived",
    "Engine",
    "Interpreted",
    "fixed_struct",
]
