"""The layout template language: validation with line numbers, the sandbox against known SSTI payloads,
CSS inlining that leaves Jinja intact, and a property test of the validator."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jinja2.exceptions import SecurityError

from mailapp.errors import TemplateError
from mailapp.sending import templating

pytestmark = pytest.mark.backend_free

# Well-known Jinja server-side template injection payloads (PayloadsAllTheThings, HackTricks, and
# variants built to dodge static checks). Every one must be refused by validate_template.
SSTI_PAYLOADS = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ ''.__class__.__mro__[2].__subclasses__()[40]('/etc/passwd').read() }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__.os.popen('id').read() }}",
    "{{ namespace.__init__.__globals__.os.popen('id').read() }}",
    "{{ request.application.__globals__.__builtins__.__import__('os').popen('id').read() }}",
    "{{ config.items() }}",
    "{{ config.__class__.__init__.__globals__['os'].popen('id').read() }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__.__builtins__ }}",
    "{{ lipsum.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('id').read() }}",
    "{% for c in [].__class__.__base__.__subclasses__() %}{{ c.__name__ }}{% endfor %}",
    "{{ ''|attr('__class__') }}",
    "{{ ''|attr('__class__')|attr('__mro__') }}",
    "{{ ''['__cla'+'ss__'] }}",
    "{{ ''['__cla' ~ 'ss__'] }}",
    "{% set x = '__cla' ~ 'ss__' %}{{ ''[x] }}",
    "{{ lipsum|attr('__glo' ~ 'bals__') }}",
    "{{ ().__class__ }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
    "{{ ''['\\x5f\\x5fclass\\x5f\\x5f'] }}",
    "{{ '{0.__class__}'.format('') }}",
    "{{ dict.mro() }}",
    "{{ range.__self__ }}",
    "{{ subscriber.attributes.__class__ }}",
    "{{ subscriber['__class__'] }}",
    "{{ [1, 2]|map(attribute='__class__')|list }}",
    "{{ [1]|selectattr('__class__')|list }}",
    "{% set ns = namespace() %}{% set ns.__class__ = 1 %}",
    "{{ subscriber.attributes.update({'plan': 'free'}) }}",
    "{% include '/etc/passwd' %}",
    "{% extends 'base.html' %}",
    "{% import 'macros.html' as m %}",
    "{{ 'x' * 100000000000 }}",
    "{{ 2 ** 100000000 }}",
]


def test_ssti_payloads_are_refused() -> None:
    # One test for the list (each test empties every table afterwards, which costs on PostgreSQL); the
    # failures name every payload that got through.
    accepted, misplaced = [], []
    for payload in SSTI_PAYLOADS:
        try:
            templating.validate_template(f"<p>Hello</p>\n{payload}")
        except TemplateError as error:
            # The payload sits on line 2: problems point there (or have no line when about the whole).
            if not error.details or any(problem["line"] not in (2, None) for problem in error.details):
                misplaced.append((payload, error.details))
        else:
            accepted.append(payload)
    assert accepted == []
    assert misplaced == []


def test_string_concatenation_is_refused_at_render_time_by_the_sandbox() -> None:
    """`''['__cla' ~ 'ss__']` hides the attribute from any static check: the sandbox itself must raise
    (not render an empty string), and validation's trial render reports it with its line."""
    source = "<p>ok</p>\n<p>{{ ''['__cla' ~ 'ss__'] }}</p>"
    template = templating.html_environment().from_string(source)
    with pytest.raises(SecurityError):
        template.render(templating.sample_context())
    with pytest.raises(TemplateError) as caught:
        templating.validate_template(source)
    assert caught.value.details == [
        {"field": None, "line": 2, "message": caught.value.details[0]["message"]}
    ]
    assert "sandbox" in caught.value.details[0]["message"]
    with pytest.raises(TemplateError):
        templating.compile_template(source)


def test_syntax_error_reports_its_line() -> None:
    with pytest.raises(TemplateError) as caught:
        templating.validate_template("<html>\n<body>\n{% if subscriber.name %}\n<p>hi</p>\n</body>")
    assert caught.value.details[0]["line"] is not None
    assert "line" in caught.value.message.lower()

    with pytest.raises(TemplateError) as caught:
        templating.validate_template("<p>one</p>\n<p>two</p>\n<p>{{ subscriber.name </p>")
    assert caught.value.details[0]["line"] == 3


def test_unknown_variables_are_flagged_with_their_lines() -> None:
    with pytest.raises(TemplateError) as caught:
        templating.validate_template(
            "<p>{{ subscriber.name }}</p>\n<p>{{ customer.name }}</p>\n{{ subscriber.phone }}"
        )
    assert caught.value.details == [
        {"field": None, "line": 2, "message": "Unknown variable 'customer'."},
        {"field": None, "line": 3, "message": "Unknown variable 'subscriber.phone'."},
    ]


def test_supported_variables_validate_and_render() -> None:
    source = (
        "{{ subscriber.email }} {{ subscriber.name }} {{ subscriber.attributes.city }} {{ sender.email }} "
        "{{ sender.name }} {{ message }} {{ campaign.subject }} {{ campaign.name }} {{ unsubscribe_url }} "
        "{% for key, value in subscriber.attributes|dictsort %}{{ key }}={{ value }};{% endfor %}"
        "{% set ns = namespace(count=0) %}"
        "{% for i in range(3) %}{% set ns.count = ns.count + i %}{% endfor %}"
        "{{ ns.count }} {{ 'ab' * 3 }} {{ 2 ** 10 }}"
    )
    variables = templating.validate_template(source)
    assert "unsubscribe_url" in variables
    assert "subscriber.attributes" in variables
    assert "sender" in variables
    html = templating.compile_template(source).render(templating.sample_context(message="Hi & bye"))
    assert "jane.doe@example.com" in html
    assert "Lisbon" in html
    assert "city=Lisbon;plan=pro;" in html
    assert "Hi &amp; bye" in html
    assert ";3 ababab 1024" in html


def test_values_are_html_escaped() -> None:
    subscriber = dict(templating.SAMPLE_SUBSCRIBER, name="<script>alert(1)</script>")
    html = templating.compile_template("<p>{{ subscriber.name }}</p>").render(
        templating.sample_context(subscriber=subscriber)
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_inline_css_keeps_jinja_loops_and_expressions_in_place() -> None:
    """The HTML parser behind the inliner moves text out of <table> ("foster parenting"); the Jinja
    tags must survive exactly where they were, also inside attributes."""
    source = (
        "<html><head><style>td { color: red; } p { margin: 0; }</style></head><body>"
        "<table>{% for item in subscriber.attributes|dictsort %}<tr><td>{{ item[0] }}</td></tr>{% endfor %}"
        "</table><a href=\"{{ unsubscribe_url }}\" title=\"{{ 'a<b' }}\">Unsubscribe</a>"
        "<p>{{ '<b>' }}</p>{# a comment #}</body></html>"
    )
    inlined = templating.inline_css(source)
    assert "<style>" not in inlined
    assert 'style="color: red;"' in inlined
    assert '<p style="margin: 0;">' in inlined
    assert "{% for item in subscriber.attributes|dictsort %}" in inlined
    assert inlined.index("{% for") < inlined.index("<tr>") < inlined.index("{% endfor %}")
    assert inlined.index("<table>") < inlined.index("{% for")
    assert 'href="{{ unsubscribe_url }}"' in inlined
    html = templating.compile_template(inlined).render(templating.sample_context())
    assert html.count('<td style="color: red;">') == 2
    assert ">city<" in html
    assert ">plan<" in html
    assert 'href="#unsubscribe"' in html
    assert "<p style=\"margin: 0;\">&lt;b&gt;</p>" in html


def test_inline_css_leaves_placeholder_lookalikes_alone() -> None:
    source = "<style>p { margin: 0; }</style><p>mailapp-jinja-99- <!--mailapp-jinja-7--> {{ message }}</p>"
    inlined = templating.inline_css(source)
    assert "mailapp-jinja-99- <!--mailapp-jinja-7--> {{ message }}</p>" in inlined


# Text built from the pieces templates are made of, so the generator reaches the parser's and the
# sandbox's interesting corners, not only plain text.
_TEMPLATE_PIECES = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", " if ", " for ", " in ", " endif ", " endfor ", " set ", "=",
        "subscriber", ".", "name", "email", "attributes", "city", "['", "']", "__class__", "_x", "|",
        "upper", "attr(", ")", "(", "'", '"', "~", "+", "*", "**", "9", "1", "message", "unsubscribe_url",
        "range(", "lipsum", "<p>", "</p>", "\n", " ", "x", "[", "]", ",", "-", "raw", "endraw", "macro",
        "namespace(", "dictsort", "loop.index", "{{ subscriber.name }}", "{% if subscriber.name %}",
        "{% endif %}", "\x00", "é", "\r\n", "default(", "join(", "format(", "%s",
    ]
)
templates = st.one_of(
    st.text(max_size=200),
    st.lists(_TEMPLATE_PIECES, max_size=40).map("".join),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=templates)
def test_validator_only_raises_template_errors_and_valid_templates_render(source: str) -> None:
    try:
        variables = templating.validate_template(source)
    except TemplateError as error:
        refusal = error
    else:
        refusal = None
    if refusal is not None:
        assert refusal.details
        for problem in refusal.details:
            assert set(problem) == {"field", "line", "message"}
            assert problem["message"]
        return
    assert isinstance(variables, list)
    rendered = templating.compile_template(source).render(templating.sample_context())
    assert isinstance(rendered, str)
    text_rendered = templating.compile_template(source, environment=templating.text_environment())
    assert isinstance(text_rendered.render(templating.sample_context()), str)
