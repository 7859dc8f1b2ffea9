"""REST plumbing shared by the Secret Manager and Key Manager APIs."""
