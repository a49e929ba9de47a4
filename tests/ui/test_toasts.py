"""Toasts are forgotten on the server once faded, so a long session does not keep every one it showed."""

from panel.io.notifications import NotificationArea

from dashboard.ui.views.toasts import SHOWN_AT_MOST, Toaster


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_toast_is_dropped_from_the_notification_area_once_it_has_faded():
    area, clock = NotificationArea(), Clock()
    toaster = Toaster(area=lambda: area, clock=clock, info_ms=3000, error_ms=6000)
    toaster("info", "37 new traces")
    toaster("error", "connection lost: server unreachable")
    assert [n.message for n in area.notifications] == ["37 new traces", "connection lost: server unreachable"]
    assert area.notifications[1].notification_type == "error" and area.notifications[1].duration == 6000

    clock.now = 4.5  # the info toast (3 s) has faded, the error toast (6 s) has not
    toaster("success", "connection restored")
    assert [n.message for n in area.notifications] == ["connection lost: server unreachable", "connection restored"]

    clock.now = 60.0
    toaster.forget_faded()
    assert area.notifications == [] and toaster.alive == 0


def test_a_flood_of_toasts_keeps_only_the_newest_few():
    area = NotificationArea()
    toaster = Toaster(area=lambda: area, clock=Clock())
    for i in range(50):
        toaster("info", f"toast {i}")
    assert len(area.notifications) == SHOWN_AT_MOST
    assert area.notifications[-1].message == "toast 49"


def test_no_notification_area_means_no_toast_and_no_error():
    toaster = Toaster(area=lambda: None)
    toaster("info", "nobody is watching")
    assert toaster.alive == 0
