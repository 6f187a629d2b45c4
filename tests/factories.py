"""Direct-to-database builders for test audiences: they live in `db.seed`, shared with the benchmarks
(fast bulk setup; the API is tested elsewhere)."""

from db.seed import Audience, make_audience, make_templates

__all__ = ["Audience", "make_audience", "make_templates"]
