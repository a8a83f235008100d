"""The chat core every chat-shaped API family shares (OpenAI chat, Responses, Anthropic
Messages, the native chat): a ChatSpec in, parsed chat events out.

Its jobs, one module each: `tools` (which tools the model may call), `constraints`
(which grammar the output must follow), `messages` (the conversation as the template
wants it), `run` (submitting the n generations and parsing their text).
"""

from lmserve.api.chat.events import ChatEvent, Finish, LogprobsDelta, LogprobsHold
from lmserve.api.chat.messages import ChatPrompt, render_prompt
from lmserve.api.chat.run import ChatRun, start_chat
from lmserve.api.chat.spec import ChatSpec

__all__ = [
    "ChatEvent",
    "ChatPrompt",
    "ChatRun",
    "ChatSpec",
    "Finish",
    "LogprobsDelta",
    "LogprobsHold",
    "render_prompt",
    "start_chat",
]
