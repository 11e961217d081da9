"""End-user jobs built on the layers below: checkpoint evaluation on the KITTI protocols (with online
refinement), prediction on images and videos, and the demo. The command line calls these."""
