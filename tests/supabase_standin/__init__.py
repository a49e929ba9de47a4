"""A stand-in for Supabase's hosted servers (PostgREST and Realtime), for tests only: they cannot run here.

It serves, on one loopback URL, only what the ``TRACES_DB_URL=supabase`` adapter sends through the real
``supabase`` client, backed by a real PostgreSQL database made to look like a Supabase project.
"""

from .project import SUPABASE_LOOK, make_project
from .server import SupabaseStandIn, service_key

__all__ = ["SUPABASE_LOOK", "SupabaseStandIn", "make_project", "service_key"]
