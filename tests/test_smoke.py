import httpx


async def test_healthz_names_the_store(api):
    async with httpx.AsyncClient(base_url=api.url) as client:
        response = await client.get("/healthz")
    assert response.json() == {"status": "ok", "store": "sqlite"}
