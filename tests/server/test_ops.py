"""Liveness and metrics, as an operator checks them."""

from __future__ import annotations


async def test_healthz_answers_without_a_token_and_names_the_store(app_api, store):
    async with app_api.client() as client:
        response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": store}


async def test_metrics_count_what_happened(app_api):
    alice = app_api.headers("alice")
    async with app_api.client() as client:
        await client.post("/api/traces", headers=alice, json={"traces": [{"name": "a"}, {"name": "b"}]})
        await client.get("/api/analytics/traces", headers={"Authorization": "Bearer not-a-jwt"})
        text = (await client.get("/metrics", headers=alice)).text
    assert 'traces_written_total{kind="insert"} 2.0' in text
    assert 'traces_auth_failures_total{reason="invalid_token"} 1.0' in text
