"""Run an experiment: ``python run.py +experiment=lsft_food_resnet``."""

from cgmagan.cli import main

if __name__ == "__main__":
    main()
