"""The reject and drop reasons are metric label values: dashboards and alert rules use them."""

from monitor.core.types import DROP_REASONS, REJECT_REASONS, DropReason, RejectReason


def test_reason_label_values_are_pinned():
    assert REJECT_REASONS == (
        "oversized",
        "malformed",
        "non_finite",
        "bad_timestamp",
        "future_timestamp",
        "unmatched_topic",
        "missing_value",
        "internal",
    )
    assert DROP_REASONS == (
        "queue_full",
        "stream_cap",
        "unknown_channel",
        "duplicate",
        "out_of_order",
        "late",
        "stale_frames",
        "no_model",
        "no_group",
        "internal_error",
        "shutdown",
    )


def test_reasons_are_plain_strings():
    # an Enum member would be exported as "DropReason.LATE" by prometheus-client's str()
    for value in (*REJECT_REASONS, *DROP_REASONS):
        assert type(value) is str and str(value) == value
    assert DropReason.LATE == "late" and RejectReason.NON_FINITE == "non_finite"
