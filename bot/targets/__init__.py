"""Process managers the bot can operate workers under."""

from bot.targets.pm2 import Pm2Target

__all__ = ["Pm2Target"]
