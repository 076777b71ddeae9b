"""The customer record (issue 18): create, edit, find by number; each edit attributed.

Functions take a ``Session`` like the rest of ``store/repo.py`` (``store.run`` /
``store.read`` give one). PINs arrive here already hashed (engine/identity.py); the
audit rows name the fields changed, never their values (STD-078, STD-079).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.orm import Session

from callflow.engine.rules import enforces
from callflow.errors import CallflowError

from .models import Customer, CustomerNumber
from .repo import audit

#: The editable text fields and their longest value (the columns' sizes).
TEXT_FIELDS: Mapping[str, int] = {"surname": 64, "given_name": 64, "title": 32,
                                  "account": 64, "address": 255, "id_tail": 8}


class CustomerConflict(CallflowError):
    """A number already belongs to another customer."""


def customer_record(customer: Customer, numbers: Sequence[str]) -> dict[str, Any]:
    """The whole record as the identity gate filters it (``pin_hash`` only as a flag)."""
    return {"customer_id": customer.id, "surname": customer.surname,
            "given_name": customer.given_name, "title": customer.title,
            "account": customer.account, "address": customer.address,
            "id_tail": customer.id_tail, "numbers": list(numbers),
            "has_pin": customer.pin_hash is not None}


def _numbers(s: Session, customer_id: int) -> list[str]:
    return list(s.scalars(select(CustomerNumber.number)
                          .where(CustomerNumber.customer_id == customer_id)
                          .order_by(CustomerNumber.number)))


def _set_numbers(s: Session, customer_id: int, numbers: Sequence[str]) -> None:
    taken = s.scalars(select(CustomerNumber).where(CustomerNumber.number.in_(numbers),
                                                   CustomerNumber.customer_id != customer_id))
    clash = next(iter(taken), None)
    if clash is not None:
        raise CustomerConflict(f"number {clash.number} belongs to customer {clash.customer_id}")
    s.execute(delete(CustomerNumber).where(CustomerNumber.customer_id == customer_id))
    s.add_all(CustomerNumber(number=n, customer_id=customer_id) for n in numbers)


@enforces("STD-079")
def save_customer(s: Session, actor: str, at: datetime, fields: Mapping[str, str],
                  numbers: Sequence[str] | None, pin_hash: str | None,
                  customer_id: int | None = None) -> dict[str, Any] | None:
    """Create (``customer_id`` None) or update a customer; None if no such customer.

    ``fields`` holds only the text fields given (checked by the caller); ``numbers``
    None keeps the numbers; ``pin_hash`` None keeps the PIN. Audited as
    ``customer.create`` / ``customer.update`` with the names of what changed.
    """
    if customer_id is None:
        customer = Customer(surname=fields.get("surname", ""), updated_at=at, updated_by=actor)
        s.add(customer)
        s.flush()
        action = "customer.create"
    else:
        found = s.get(Customer, customer_id)
        if found is None:
            return None
        customer = found
        action = "customer.update"
    changed = sorted(k for k, v in fields.items()
                     if customer_id is None or getattr(customer, k) != v)
    for key, value in fields.items():
        setattr(customer, key, value)
    if pin_hash is not None:
        customer.pin_hash = pin_hash
        changed.append("pin")
    if numbers is not None:
        if sorted(numbers) != _numbers(s, customer.id):
            changed.append("numbers")
        _set_numbers(s, customer.id, numbers)
    customer.updated_at, customer.updated_by = at, actor
    s.flush()
    audit(s, actor, action, at, target=f"customer:{customer.id}", detail={"fields": changed})
    return customer_record(customer, _numbers(s, customer.id))


_NUMBERS: Table = cast(Table, CustomerNumber.__table__)
_CUSTOMER_OF = select(_NUMBERS.c.customer_id).where(_NUMBERS.c.number == bindparam("number"))


def customer_for_number(s: Session, number: str) -> tuple[dict[str, Any], str | None] | None:
    """The customer calling from ``number`` and their PIN hash, or None. Asked for every
    inbound call: the number is looked up with one prepared statement, the ORM is used
    only for a known caller (issue 20)."""
    customer_id = s.connection().execute(_CUSTOMER_OF, {"number": number}).scalar()
    if customer_id is None:
        return None
    customer = s.get(Customer, customer_id)
    if customer is None:
        return None
    return customer_record(customer, _numbers(s, customer.id)), customer.pin_hash


def get_customer(s: Session, customer_id: int) -> dict[str, Any] | None:
    customer = s.get(Customer, customer_id)
    return None if customer is None else customer_record(customer, _numbers(s, customer.id))
