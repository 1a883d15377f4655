"""Create the benchmark's organizations, agents and agent sessions through the services.

    python bench/setup_data.py --orgs 25 --agents 20 > data.json

Prints {"orgs": [{"embed_token", "agents": [{"email", "password", "cookie"}]}]}. Agents are
logged in here once (argon2 is deliberately slow) and the load generator reuses the cookies.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import uuid

import server.services.auth
import server.services.orgs
from chatd.wiring import build_services
from server import migrate
from server.security import hash_password, verify_password
from server.settings import Settings

PASSWORD = "bench-password-123"

# Every benchmark agent has the same password: hash it once and check it once. Argon2 is
# deliberately slow (about 0.1 s a call here): a hash and a check per agent made the setup of
# one target take over a minute and a half for 525 agents.
server.services.orgs.hash_password = functools.cache(hash_password)
server.services.auth.verify_password = functools.cache(verify_password)


async def setup(n_orgs: int, n_agents: int) -> dict:
    settings = Settings.from_env()
    services = build_services(settings)
    run = uuid.uuid4().hex[:8]
    orgs = []
    try:
        for o in range(n_orgs):
            created = await services.orgs.bootstrap(
                f"bench-{run}-{o}", f"owner-{run}-{o}@bench.example", PASSWORD
            )
            agents = []
            for a in range(n_agents):
                email = f"agent-{run}-{o}-{a}@bench.example"
                await services.orgs.add_user(created["org_id"], email, PASSWORD, "admin")
                token, _user = await services.auth.login(email, PASSWORD)
                agents.append({"email": email, "password": PASSWORD, "cookie": f"session={token}"})
            orgs.append(
                {
                    "org_id": created["org_id"],
                    "embed_token": created["embed_token"],
                    "agents": agents,
                }
            )
    finally:
        await services.db.dispose()
        if services.redis is not None:
            await services.redis.aclose()
    return {"orgs": orgs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--orgs", type=int, default=25)
    parser.add_argument("--agents", type=int, default=20)
    args = parser.parse_args()
    migrate.upgrade(Settings.from_env().database_url)
    print(json.dumps(asyncio.run(setup(args.orgs, args.agents))))


if __name__ == "__main__":
    main()
