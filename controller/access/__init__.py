"""Who may do what: users, roles, API keys, the principal of a request, the audit
trail and the live event stream (see the README's "Users and access")."""
