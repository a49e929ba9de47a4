"""Reading the JSON a client sent: every way ``json.loads`` fails is the client's mistake, said in words.

Besides text that is not JSON, Python refuses JSON it cannot hold: nesting past its recursion limit
(``RecursionError``) and integers of more than ``sys.get_int_max_str_digits()`` digits (a plain
``ValueError``). Neither is a ``JSONDecodeError``, so both used to be 500s.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from ..schema import MAX_JSON_DEPTH


class JsonError(ValueError):
    """Text that is not JSON."""


class JsonBeyondLimits(JsonError):
    """JSON, but beyond what can be read: too deeply nested, or a number with too many digits."""


def load_json(raw: bytes | str) -> Any:
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise JsonError(str(exc)) from None
    except RecursionError:
        raise JsonBeyondLimits(f"objects and lists nest deeper than the {MAX_JSON_DEPTH} levels a trace may hold") from None
    except ValueError:  # what int() says of a long number, with advice for the server's programmer
        raise JsonBeyondLimits(f"a number has more than {sys.get_int_max_str_digits()} digits") from None
