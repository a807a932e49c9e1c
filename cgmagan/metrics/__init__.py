"""Agreement with the target Grad-CAM, and faithfulness to the classifier."""
