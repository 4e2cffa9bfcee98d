"""The endpoint table of ``/api/v1``; each handler module adds its routes to it."""

from edgefleet.controller.api.routing import Endpoints

API_PREFIX = "/api/v1"
endpoints = Endpoints(API_PREFIX)
