"""Hypothesis strategies shared by the property tests of the response parser and the client."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["Code", "Message", "Data", "TaskList", "TaskId", "Status", "RoomId",
                         "StreamId", "CreateTime", "FailReason", "x"]) | st.text(max_size=5),
        inner, max_size=6),
    max_leaves=20,
)
"""Any JSON value, its object keys mostly the field names of ZEGO's answers."""
