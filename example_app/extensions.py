"""The two extension objects of the example app, created once and bound in ``create_app``.

Models import ``cache`` from here to declare their tags (``@cache.track``), so this module
must not import anything else of the app.
"""

from __future__ import annotations

from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase

from flask_dataroom_cache import DataRoomCache


class Base(DeclarativeBase):
    pass


db = SQLAlchemy(model_class=Base)
cache = DataRoomCache()
