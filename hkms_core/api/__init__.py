"""REST plumbing shared by both Scaleway-compatible APIs: authentication, the error handler,
parsers, fields, paging and throttling."""
