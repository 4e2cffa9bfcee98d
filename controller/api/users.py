"""User accounts and their role bindings (``controller.access.accounts``)."""

from __future__ import annotations

from aiohttp import web

from edgefleet.controller.api.context import caller, context
from edgefleet.controller.api.endpoints import endpoints
from edgefleet.controller.api.schemas import (
    BindingIn,
    BindingList,
    Deleted,
    Page,
    SelfUpdate,
    User,
    UserCreate,
    UserListQuery,
    UserPath,
    UserUpdate,
)
from edgefleet.controller.store import Binding

TAG = "users"
ADMIN = "users:admin"
# Digits only, so that /users/me is never taken for a user id (nor listed as
# allowing the methods of /users/{user_id}).
USER = r"/users/{user_id:\d+}"


def bindings(items: list[BindingIn]) -> list[Binding]:
    return [Binding(item.role, item.group_id) for item in items]


@endpoints.patch(
    "/users/me",
    summary="Change your own email or password (the old password is required)",
    tag=TAG,
    errors=(403, 409),
    permission="authenticated",
)
async def update_me(request: web.Request, body: SelfUpdate) -> User:
    fields = body.model_fields_set - {"old_password"}
    user = await context(request).accounts.update_self(
        caller(request), body.email, body.password, body.old_password, fields
    )
    return User.of(user)


@endpoints.get("/users", summary="List users, by name", tag=TAG, permission=ADMIN)
async def list_users(request: web.Request, query: UserListQuery) -> Page[User]:
    rows, total = await context(request).store.users.list(query.q, query.page, query.per_page)
    return Page[User](
        items=[User.of(row) for row in rows], page=query.page, per_page=query.per_page, total=total
    )


@endpoints.post(
    "/users",
    summary="Create a user; without a password, a service account for API keys",
    tag=TAG,
    status=201,
    errors=(404, 409),
    permission=ADMIN,
)
async def create_user(request: web.Request, body: UserCreate) -> User:
    values = body.model_dump(exclude={"password", "roles"})
    user = await context(request).accounts.create_user(
        caller(request), values, body.password, bindings(body.roles)
    )
    return User.of(user)


@endpoints.get(USER, summary="Get a user", tag=TAG, errors=(404,), permission=ADMIN)
async def get_user(request: web.Request, path: UserPath) -> User:
    return User.of(await context(request).store.users.get(path.user_id))


@endpoints.patch(
    USER,
    summary="Change a user; the last active administrator cannot be disabled or demoted",
    tag=TAG,
    errors=(404, 409),
    permission=ADMIN,
)
async def update_user(request: web.Request, path: UserPath, body: UserUpdate) -> User:
    changes = body.model_dump(exclude_unset=True, exclude={"password"})
    password = body.password if "password" in body.model_fields_set else None
    user = await context(request).accounts.update_user(
        caller(request), path.user_id, changes, password
    )
    return User.of(user)


@endpoints.delete(
    USER,
    summary="Delete a user with its keys and sessions (not the last administrator)",
    tag=TAG,
    errors=(404, 409),
    permission=ADMIN,
)
async def delete_user(request: web.Request, path: UserPath) -> Deleted:
    await context(request).accounts.delete_user(caller(request), path.user_id)
    return Deleted()


@endpoints.put(
    f"{USER}/roles",
    summary="Make a user's role bindings exactly these",
    tag=TAG,
    errors=(404, 409),
    permission=ADMIN,
)
async def set_user_roles(request: web.Request, path: UserPath, body: BindingList) -> User:
    user = await context(request).accounts.set_bindings(
        caller(request), path.user_id, bindings(body.root)
    )
    return User.of(user)
