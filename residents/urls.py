from __future__ import annotations

from django.urls import path

from residents import views

app_name = "residents"
urlpatterns = [
    path("", views.home, name="home"),
    path("sign-in", views.start, name="start"),
    path("sign-in/code", views.verify, name="verify"),
    path("requests/<uuid:request_id>/decide", views.decide, name="decide"),
    path("consents/withdraw", views.withdraw, name="withdraw"),
    path("report.csv", views.report, name="report"),
    path("sign-out", views.signout, name="signout"),
]
