"""The seed README's quick start, unchanged: run with `python examples/quickstart.py`."""

import asyncio

from conveyor import batch_task, single_task


# Define some tasks
@single_task
async def multiply_by_two(x: int) -> int:
    print(f"Multiplying {x} by 2")
    await asyncio.sleep(0.01)  # simulate io-bound work
    return x * 2


@batch_task(max_size=3)
async def sum_batch(batch: list[int]) -> int:
    print(f"Summing batch: {batch}")
    await asyncio.sleep(0.05)  # simulate io-bound work
    s = sum(batch)
    print(f"Sum of batch {batch} is {s}")
    return s


@single_task
async def add_ten(x: int) -> int:
    print(f"Adding 10 to {x}")
    await asyncio.sleep(0.01)
    return x + 10


async def main():
    # Create a pipeline
    pipeline = multiply_by_two | sum_batch | add_ten

    data_source = [1, 2, 3, 4, 5, 6, 7]

    # Option 1: Process results as they come
    print("Streaming results as they come...")
    stream = pipeline(data_source)
    async for item in stream:
        print(f"Streamed item: {item}")

    # Option 2: Collect all results
    print("\nCollecting all results...")
    # Re-create stream for fresh iteration
    results = await pipeline(data_source).collect()
    print(f"Collected results: {results}")
    # Results: [22, 40, 24]


if __name__ == "__main__":
    asyncio.run(main())
