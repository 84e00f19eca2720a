"""factory_boy factories for test data. Rows are committed, so a real worker can see them."""

from __future__ import annotations

import factory
from factory.alchemy import SQLAlchemyModelFactory

from mailapp.extensions import db
from mailapp.models import Campaign, Layout, Subscriber, SubscriberList

SIMPLE_LAYOUT = (
    "<html><body><h1>Hello {{ subscriber.name }}</h1>{{ message }}"
    '<p><a href="https://example.com/offer">Offer</a></p>'
    '<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>'
)


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class SubscriberListFactory(_Base):
    class Meta:
        model = SubscriberList

    name = factory.Sequence(lambda n: f"List {n}")
    description = ""


class SubscriberFactory(_Base):
    class Meta:
        model = Subscriber

    email = factory.Sequence(lambda n: f"person{n}@example.com")
    name = factory.Sequence(lambda n: f"Person {n}")
    attributes = factory.LazyFunction(dict)
    status = "active"


class LayoutFactory(_Base):
    class Meta:
        model = Layout

    name = factory.Sequence(lambda n: f"Layout {n}")
    html = SIMPLE_LAYOUT


class CampaignFactory(_Base):
    class Meta:
        model = Campaign

    name = factory.Sequence(lambda n: f"Campaign {n}")
    subject = "Hello {{ subscriber.name }}"
    from_name = "Example News"
    from_email = "news@example.com"
    layout = factory.SubFactory(LayoutFactory)
    message = "This week's news."
