"""A small shop service: its graphs are generated into shop_service.gen."""

VERSION = "1.0"
