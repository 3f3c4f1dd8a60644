"""`flowgate admin` changes made while serve runs are seen without a restart:
the harness adds an image and a second pool; this waits until the API shows them."""
import os
import sys
import time

from common import boto3_client, check, main


def scenario():
    ec2 = boto3_client("A")
    image_id = sys.argv[1]
    deadline = time.time() + 5
    while image_id not in [i["ImageId"] for i in ec2.describe_images()["Images"]]:
        check(time.time() < deadline, "the new image appears within 5 s")
        time.sleep(0.05)
    check(True, f"image {image_id} added by flowgate admin is visible")
    inst = ec2.run_instances(ImageId=image_id, MinCount=1, MaxCount=1)["Instances"][0]
    check(inst["ImageId"] == image_id, "and instances can be launched from it")


main(scenario)
