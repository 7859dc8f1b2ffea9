"""Console views: thin wrappers that call guarded services with the request's principal."""
