from flask_dataroom_cache import (
    cache_get,
    cache_set,
    get_cache_key,
    get_cache_tags,
    invalidate_tags,
)


def test_set_get_invalidate(app):
    key = get_cache_key("file", "list", dataRoomId="r1")
    tags = get_cache_tags("file", "list", data_room_id="r1")
    assert cache_get(key, tags) is None
    assert cache_set(key, {"items": [1]}, tags=tags)
    assert cache_get(key, tags) == {"items": [1]}
    invalidate_tags("dataroom:r1")
    assert cache_get(key, tags) is None
