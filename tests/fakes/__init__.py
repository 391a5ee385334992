"""Fakes of the outside world for tests: WeChat's API host and WeChat's callbacks (an owner's phone)."""
