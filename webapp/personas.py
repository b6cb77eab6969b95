"""Four practitioners the app is tried as (issue #16): the browser tests and the README's screenshots use them.
Each is a shared link's answers (query parameters of the Advisor page)."""
from urllib.parse import urlencode

PERSONAS = {
    "hospital": ("A hospital researcher: 4 CT classes x 30 images, 512 px greyscale, a laptop CPU, 8 human hours",
                 {"n_classes": 4, "images_per_class": 30, "domain": "medical", "image_size_px": 512,
                  "colour": "false", "hardware": "cpu_laptop", "budget_human_hours": 8}),
    "startup": ("A startup engineer: 20 classes x 500 product photos, an NVIDIA T4, $50",
                {"n_classes": 20, "images_per_class": 500, "domain": "product photos", "image_size_px": 224,
                 "hardware": "t4", "budget_money_usd": 50}),
    "student": ("A student: 5 classes x 3 images, no GPU (a laptop CPU)",
                {"n_classes": 5, "images_per_class": 3, "domain": "natural objects", "image_size_px": 224,
                 "hardware": "cpu_laptop"}),
    "factory": ("A factory QA lead: 2 classes x 200 greyscale images, an A100 in Germany, 0.1 kg CO₂",
                {"n_classes": 2, "images_per_class": 200, "domain": "industrial inspection", "image_size_px": 224,
                 "colour": "false", "hardware": "a100", "region": "DEU", "budget_co2_kg": 0.1}),
}


def persona_path(name: str) -> str:
    """The Advisor page's path with this persona's answers, e.g. '/?n_classes=4&...'."""
    return "/?" + urlencode(PERSONAS[name][1])
